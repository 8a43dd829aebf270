"""The released code's `resnet20` (research/ista.md 3.1). NOT the textbook He et al. CIFAR ResNet-20:

- stem `first_conv` 3x3 3->16, BN with beta only, ReLU;
- 3 groups x 3 blocks, widths 16/32/64 on 32/16/8 maps, the first block of groups 1 and 2 strided;
  block: c0 3x3 (stride s) + BN(gamma, beta) + ReLU -> c1 3x3 + BN(beta only), no activation;
  shortcut: identity, or a 2x2 stride-2 conv + BN(beta only) when s = 2 (projection, "type B"-like);
  merge by addition with NO ReLU after it (the residual stream is never rectified after the stem);
- head: 8x8 average pool, 1x1 conv 64->10, BN(gamma, beta) on the logits.

Only the nine c0 BNs carry a penalised gamma ("9 convolutions in total"), so only c0 output channels
are pruned; a compressed model differs from the full one only in its c0 widths (`widths`).
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

from ista_tf.models.layers import BatchNorm, Conv2D
from ista_tf.models.units import PrunableUnit

GROUP_WIDTHS = (16, 32, 64)
FULL_WIDTHS = tuple(w for w in GROUP_WIDTHS for _ in range(3))  # the nine c0 widths of the full model


class Block(tf.Module):
    def __init__(self, label: str, c_in: int, mid: int, width: int, stride: int, seed: int, index: int):
        super().__init__(name=label)
        self.c0 = Conv2D(f"{label}c0", c_in, mid, 3, stride=stride, role="prunable", seed=(seed, index))
        self.c0_bn = BatchNorm(f"{label}c0/BatchNorm", mid, scale=True, center=True, role="prunable")
        self.c1 = Conv2D(f"{label}c1", mid, width, 3, role="block", seed=(seed, index + 1))
        self.c1_bn = BatchNorm(f"{label}c1/BatchNorm", width, scale=False, center=True, role="block")
        if stride != 1:
            self.proj = Conv2D(f"{label}proj", c_in, width, 2, stride=2, role="shortcut", seed=(seed, index + 2))
            self.proj_bn = BatchNorm(f"{label}proj/BatchNorm", width, scale=False, center=True, role="shortcut")
        else:
            self.proj = self.proj_bn = None

    def __call__(self, x: tf.Tensor, training: bool) -> tf.Tensor:
        h = tf.nn.relu(self.c0_bn(self.c0(x), training))
        h = self.c1_bn(self.c1(h), training)  # no activation after c1
        shortcut = x if self.proj is None else self.proj_bn(self.proj(x), training)
        return shortcut + h  # no ReLU after the addition

    def layers(self) -> list:
        out = [self.c0, self.c0_bn, self.c1, self.c1_bn]
        return out + ([self.proj, self.proj_bn] if self.proj is not None else [])


class ResNet20(tf.Module):
    """`widths`: the nine c0 widths (default: the full 16x3, 32x3, 64x3)."""

    model_name = "resnet20"
    full_widths = FULL_WIDTHS

    def __init__(
        self,
        widths: Sequence[int] | None = None,
        num_classes: int = 10,
        seed: int = 0,
        compute_dtype: tf.DType = tf.float32,
    ):
        super().__init__(name="resnet20")
        widths = tuple(int(w) for w in (widths if widths is not None else FULL_WIDTHS))
        if len(widths) != 9 or min(widths) < 1:
            raise ValueError(f"resnet20 needs nine c0 widths >= 1, got {widths}")
        self.widths = widths
        self.compute_dtype = compute_dtype
        self.first_conv = Conv2D("first_conv", 3, 16, 3, role="stem", seed=(seed, 0))
        self.first_bn = BatchNorm("first_conv/BatchNorm", 16, scale=False, center=True, role="stem")
        self.blocks = []
        c_in = 16
        for g, width in enumerate(GROUP_WIDTHS):
            for b in range(3):
                stride = 2 if (g > 0 and b == 0) else 1
                i = 3 * g + b
                self.blocks.append(Block(f"g{g}b{b}", c_in, widths[i], width, stride, seed, 1 + 3 * i))
                c_in = width
        self.logits_conv = Conv2D("logits", 64, num_classes, 1, role="head", seed=(seed, 100))
        self.logits_bn = BatchNorm("logits/BatchNorm", num_classes, scale=True, center=True, role="head")

    @property
    def arch(self) -> dict:
        return {"model": self.model_name, "widths": list(self.widths)}

    def __call__(self, images: tf.Tensor, training: bool = False) -> tf.Tensor:
        x = tf.cast(images, self.compute_dtype)
        x = tf.nn.relu(self.first_bn(self.first_conv(x), training))
        for block in self.blocks:
            x = block(x, training)
        x = tf.nn.avg_pool2d(x, 8, 8, "VALID")
        logits = self.logits_bn(self.logits_conv(x), training)
        return tf.cast(tf.squeeze(logits, [1, 2]), tf.float32)

    def layers(self) -> list:
        """Convs and BNs in the order of `shared.archs.ista_resnet20`."""
        out = [self.first_conv, self.first_bn]
        for block in self.blocks:
            out += block.layers()
        return out + [self.logits_conv, self.logits_bn]

    def units(self) -> list[PrunableUnit]:
        """The nine c0 layers: penalised gamma, output read by c1 of the same block.
        next_cost = c1's C_out x 3x3 (Transformer add_to_cost, research/ista.md 2.3)."""
        units = []
        hw = 32
        for i, block in enumerate(self.blocks):
            if block.proj is not None:
                hw //= 2
            width = GROUP_WIDTHS[i // 3]
            units.append(
                PrunableUnit(
                    block.c0.label,
                    block.c0,
                    block.c0_bn,
                    block.c1,
                    block.c1_bn,
                    out_hw=hw,
                    next_cost=width * 3 * 3,
                )
            )
        return units

    def weight_decay_kernels(self) -> list[tf.Variable]:
        """Every conv kernel: stem, c0, c1, projections and the logits conv (research/ista.md 2.8)."""
        return [layer.kernel for layer in self.layers() if isinstance(layer, Conv2D)]
