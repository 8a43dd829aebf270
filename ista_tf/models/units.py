"""What the method needs to know about a prunable layer, independent of the model."""

from __future__ import annotations

from dataclasses import dataclass

from ista_tf.models.layers import BatchNorm, Conv2D


@dataclass(frozen=True)
class PrunableUnit:
    """A conv whose BN carries a penalised gamma (research/ista.md 2.3), and the layer reading it.

    A channel of `conv` whose gamma is exactly zero outputs the constant ReLU(beta); removing it
    removes an output channel of `conv`/`bn` and an input channel of `next_conv` (reached through a
    ReLU, and a max-pool in cnn4); the paper folds the constant into `next_bn`'s moving mean.

    out_hw: output map size of `conv` (before any pooling), the H_l W_l of lambda_l.
    next_cost: the original code's hard-coded `add_to_cost` numerator, C_out x kernel area of the next
    conv at the FULL model's widths (the original never updates it for compressed models).
    """

    label: str
    conv: Conv2D
    bn: BatchNorm
    next_conv: Conv2D
    next_bn: BatchNorm
    out_hw: int
    next_cost: int
