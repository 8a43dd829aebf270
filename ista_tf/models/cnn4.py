"""The released code's `cnn4`, the paper's "ConvNet" (research/ista.md 3.2; paper Table 1):

    conv1 5x5 3->96   BN ReLU  maxpool 3x3/2 SAME -> 16x16
    conv2 5x5 96->192 BN ReLU  maxpool            -> 8x8
    conv3 3x3 192->192 BN ReLU maxpool            -> 4x4
    fc1   4x4 VALID conv 192->384 BN ReLU         -> 1x1
    logits 1x1 conv 384->10 + BN(gamma, beta)

Every BN has gamma and beta; conv1, conv2, conv3 and fc1 are penalised (the logits BN has lambda = 0).
No weight decay (the original passes none to cnn4) and no dropout. `widths` are the four hidden widths;
(32, 64, 64, 128) is the paper's reference ConvNet.
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

from ista_tf.models.layers import BatchNorm, Conv2D
from ista_tf.models.units import PrunableUnit

FULL_WIDTHS = (96, 192, 192, 384)
# (label, kernel, padding, output map size) of the four hidden layers
_LAYERS = (
    ("conv1", 5, "SAME", 32),
    ("conv2", 5, "SAME", 16),
    ("conv3", 3, "SAME", 8),
    ("fc1", 4, "VALID", 1),
)
# add_to_cost numerators of the original (next conv C_out x kernel area at full widths). Quirk kept from
# the original (research/ista.md 2.3): conv3's uses a 3x3 area although fc1's kernel is 4x4.
_NEXT_COST = (192 * 5 * 5, 192 * 3 * 3, 384 * 3 * 3, 10 * 1 * 1)


class CNN4(tf.Module):
    model_name = "cnn4"
    full_widths = FULL_WIDTHS

    def __init__(
        self,
        widths: Sequence[int] | None = None,
        num_classes: int = 10,
        seed: int = 0,
        compute_dtype: tf.DType = tf.float32,
    ):
        super().__init__(name="cnn4")
        widths = tuple(int(w) for w in (widths if widths is not None else FULL_WIDTHS))
        if len(widths) != 4 or min(widths) < 1:
            raise ValueError(f"cnn4 needs four hidden widths >= 1, got {widths}")
        self.widths = widths
        self.compute_dtype = compute_dtype
        self.convs, self.bns = [], []
        c_in = 3
        for i, ((label, k, padding, _), width) in enumerate(zip(_LAYERS, widths)):
            self.convs.append(Conv2D(label, c_in, width, k, padding=padding, role="prunable", seed=(seed, i)))
            self.bns.append(BatchNorm(f"{label}/BatchNorm", width, scale=True, center=True, role="prunable"))
            c_in = width
        self.logits_conv = Conv2D("logits", c_in, num_classes, 1, role="head", seed=(seed, 100))
        self.logits_bn = BatchNorm("logits/BatchNorm", num_classes, scale=True, center=True, role="head")

    @property
    def arch(self) -> dict:
        return {"model": self.model_name, "widths": list(self.widths)}

    def __call__(self, images: tf.Tensor, training: bool = False) -> tf.Tensor:
        x = tf.cast(images, self.compute_dtype)
        for i, (conv, bn) in enumerate(zip(self.convs, self.bns)):
            x = tf.nn.relu(bn(conv(x), training))
            if i < 3:
                x = tf.nn.max_pool2d(x, 3, 2, "SAME")
        logits = self.logits_bn(self.logits_conv(x), training)
        return tf.cast(tf.squeeze(logits, [1, 2]), tf.float32)

    def layers(self) -> list:
        """Convs and BNs in the order of `shared.archs.ista_cnn4`."""
        out = []
        for conv, bn in zip(self.convs, self.bns):
            out += [conv, bn]
        return out + [self.logits_conv, self.logits_bn]

    def units(self) -> list[PrunableUnit]:
        nexts = list(zip(self.convs[1:], self.bns[1:])) + [(self.logits_conv, self.logits_bn)]
        return [
            PrunableUnit(conv.label, conv, bn, next_conv, next_bn, out_hw=hw, next_cost=cost)
            for conv, bn, (next_conv, next_bn), (_, _, _, hw), cost in zip(
                self.convs, self.bns, nexts, _LAYERS, _NEXT_COST
            )
        ]

    def weight_decay_kernels(self) -> list[tf.Variable]:
        """None: the original builds cnn4 without weight decay (research/ista.md 2.8)."""
        return []
