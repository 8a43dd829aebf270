"""Adapter: a real ista_tf model -> `shared.flops` layer specs, counted by the shared code.

The specs come from the model's variables (kernel shapes, which of gamma/beta a BN has) and from the
map sizes a probe forward pass records, so a compressed model is counted from its real shapes. The
ISTA convention is `ista-slim`: kernels + BN gamma, beta, moving mean and moving variance, the count
the original `cifar10_eval` prints as "total params" (281,304 for the full resnet20).
"""

from __future__ import annotations

import tensorflow as tf

from ista_tf.models.layers import BatchNorm, Conv2D
from shared import flops

CONVENTION = "ista-slim"


def _square(shape) -> int | tuple[int, int]:
    a, b = int(shape[0]), int(shape[1])
    return a if a == b else (a, b)


def layer_specs(model) -> list[flops.LayerSpec]:
    """Conv and BatchNorm specs in the model's order (names are the original scope names)."""
    model(tf.zeros([1, 32, 32, 3]), training=False)  # records each layer's output map size
    specs: list[flops.LayerSpec] = []
    for layer in model.layers():
        if isinstance(layer, Conv2D):
            specs.append(
                flops.Conv(
                    layer.label,
                    layer.c_in,
                    layer.c_out,
                    _square(layer.kernel.shape),
                    layer.output_hw,
                    role=layer.role,
                )
            )
        elif isinstance(layer, BatchNorm):
            specs.append(
                flops.BatchNorm(
                    layer.label,
                    layer.channels,
                    layer.output_hw,
                    scale=layer.gamma is not None,
                    center=layer.beta is not None,
                    role=layer.role,
                )
            )
    return specs


def count(model, convention: str = CONVENTION) -> flops.Counts:
    return flops.count(layer_specs(model), convention)


def total_params(model) -> int:
    """The original's "total params": slim count of kernels and BN gamma/beta/moving statistics."""
    return count(model).params
