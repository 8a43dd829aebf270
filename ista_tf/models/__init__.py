"""The two CIFAR-10 models of the released code, selectable by name (the original needed a code edit).

An architecture is described by a small dict, `{"model": "resnet20" | "cnn4", "widths": [...]}` (the
widths of the prunable layers), stored as `arch.json` next to every checkpoint; `build_model` rebuilds a
model, full or compressed, from it alone.
"""

from __future__ import annotations

import tensorflow as tf

from ista_tf.models.cnn4 import CNN4
from ista_tf.models.resnet20 import ResNet20
from ista_tf.models.units import PrunableUnit
from shared.errors import UserError

MODELS = {"resnet20": ResNet20, "cnn4": CNN4}

__all__ = ["CNN4", "MODELS", "PrunableUnit", "ResNet20", "build_model", "check_model_name", "full_arch"]


def check_model_name(name) -> str:
    """The one check of a model name (flags, stage settings, architecture files)."""
    if name not in MODELS:
        raise UserError(f"--model must be one of {sorted(MODELS)}, got {name!r}")
    return name


def full_arch(name: str) -> dict:
    check_model_name(name)
    return {"model": name, "widths": list(MODELS[name].full_widths)}


def build_model(arch: dict, seed: int = 0, compute_dtype: tf.DType = tf.float32):
    """A ResNet20 or CNN4 with the widths of `arch` (create it under the strategy's scope)."""
    name = check_model_name(arch.get("model"))
    return MODELS[name](widths=arch.get("widths"), seed=seed, compute_dtype=compute_dtype)
