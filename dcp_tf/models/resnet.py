"""The ResNets DCP runs on, as tf.Modules.

- `pocketflow` (PocketFlow's `nets/resnet_at_cifar10.py` / `resnet_at_ilsvrc12.py`, built by TF-official's
  `resnet_model.py` with version 2): pre-activation blocks; a 1x1 projection on the pre-activated input
  in the FIRST block of EVERY stage (stage 1 too, where the shapes match), created before conv1, so
  ResNet-20 has 22 convs; CIFAR: 3x3 stem, 16 filters, no BN after it; ImageNet: 7x7/2 stem, 64 filters,
  3x3/2 max-pool, 1001 classes (index 0 = background); final BN-ReLU, global average pool, dense.
  BN decay 0.997, epsilon 1e-5 (TF-official's).
- `paper` (the authors' PyTorch PreResNet, research/dcp.md 3.2): the same pre-activation blocks with a 1x1
  projection only where the shape changes; the first block of each stage takes its shortcut from the
  pre-activated input ("both_preact"), the others from the raw input; PreResNet-56 has 855,578 params.
  BN momentum 0.1 (decay 0.9), epsilon 1e-5 (PyTorch's).

`forward` returns the raw (pre-BN) output of every conv by graph-creation index and the output of every
residual block: DCP's reconstruction losses read the former, its auxiliary heads one or the other.
The layer lists match `shared.archs.pocketflow_resnet` / `dcp_preresnet` (tested).
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

from dcp_tf.models.layers import BatchNorm, Conv2D, Dense
from shared import archs
from shared.errors import UserError

FAMILIES = ("pocketflow", "paper")
DATASETS = ("cifar10", "ilsvrc12")
BN_SETTINGS = {"pocketflow": (0.997, 1e-5), "paper": (0.9, 1e-5)}


class Block(tf.Module):
    """Pre-activation residual block (basic: two 3x3 convs; bottleneck: 1x1, 3x3 (strided), 1x1).

    `main` are the block's convs in order, `bns[j]` the BN before main[j] (bns[0] pre-activates the input
    and feeds the projection too)."""

    def __init__(self, label, kind, c_in, width, c_out, stride, project, preact_shortcut, bn, seed):
        super().__init__(name=label.replace(".", "_"))
        decay, eps = bn
        self.label = label
        self.preact_shortcut = preact_shortcut
        self.proj = Conv2D(f"{label}.proj", c_in, c_out, 1, stride, role="shortcut", seed=seed(0)) if project else None
        if kind == "basic":
            shapes = [(c_in, width, 3, stride), (width, c_out, 3, 1)]
        else:
            shapes = [(c_in, width, 1, 1), (width, width, 3, stride), (width, c_out, 1, 1)]
        self.main = [
            Conv2D(f"{label}.conv{j + 1}", ci, co, k, s, role="block" if j == 0 else "prunable", seed=seed(j + 1))
            for j, (ci, co, k, s) in enumerate(shapes)
        ]
        self.bns = [
            BatchNorm(f"{label}.bn{j + 1}", ci, decay=decay, epsilon=eps) for j, (ci, _, _, _) in enumerate(shapes)
        ]

    def convs(self) -> list[Conv2D]:
        return ([self.proj] if self.proj is not None else []) + self.main

    def __call__(self, x, training: bool, update: bool, conv_outs: dict) -> tf.Tensor:
        pre = tf.nn.relu(self.bns[0](x, training, update))
        shortcut = pre if self.preact_shortcut else x
        if self.proj is not None:
            shortcut = self.proj(shortcut)
            conv_outs[self.proj.index] = shortcut
        h = pre
        for j, conv in enumerate(self.main):
            if j:
                h = tf.nn.relu(self.bns[j](h, training, update))
            h = conv(h)
            conv_outs[conv.index] = h
        return h + shortcut


def _seeds(seed: int, block: int):
    """Stateless seeds of a block's convs: (seed, 1000 block + j)."""
    return lambda j: (seed, 1000 * block + j)


class ResNet(tf.Module):
    def __init__(self, family: str = "pocketflow", dataset: str = "cifar10", size: int = 20, seed: int = 0):
        super().__init__(name="resnet")
        if family not in FAMILIES:
            raise UserError(f"unknown network family {family!r}; expected one of {FAMILIES}")
        if dataset not in DATASETS:
            raise UserError(f"unknown dataset {dataset!r}; expected one of {DATASETS}")
        if family == "paper" and dataset != "cifar10":
            raise UserError(
                "the paper's ImageNet ResNets (torchvision v1) are available for counting only "
                "(python -m dcp_tf.flops); train on ImageNet with PocketFlow's networks (--resnet_def pocketflow)"
            )
        self.family, self.dataset, self.size = family, dataset, int(size)
        bn = BN_SETTINGS[family]
        if family == "pocketflow":
            kind, counts, widths = archs.pocketflow_resnet_plan(size, dataset)
        else:
            if size < 8 or (size - 2) % 6:
                raise UserError(f"the paper's PreResNet needs resnet_size = 6n+2 >= 8 (20, 56), got {size}")
            n = (size - 2) // 6
            kind, counts, widths = "basic", (n, n, n), (16, 32, 64)
        self.kind = kind
        expansion = 1 if kind == "basic" else 4
        cifar = dataset == "cifar10"
        self.num_classes = 10 if cifar else 1001
        stem_c = 16 if cifar else 64
        self.stem = Conv2D("conv0", 3, stem_c, 3 if cifar else 7, 1 if cifar else 2, role="stem", seed=(seed, 0))
        self.blocks: list[Block] = []
        c_in = stem_c
        for s, (nb, width) in enumerate(zip(counts, widths)):
            for b in range(nb):
                stride = 2 if (s > 0 and b == 0) else 1
                c_out = width * expansion
                project = b == 0 if family == "pocketflow" else (stride != 1 or c_in != c_out)
                self.blocks.append(
                    Block(
                        f"stage{s + 1}.block{b}",
                        kind,
                        c_in,
                        width,
                        c_out,
                        stride,
                        project,
                        b == 0,
                        bn,
                        _seeds(seed, len(self.blocks) + 1),
                    )
                )
                c_in = c_out
        self.final_bn = BatchNorm("final_bn", c_in, decay=bn[0], epsilon=bn[1])
        self.dense = Dense("dense", c_in, self.num_classes, seed=(seed, 999_999))
        self.convs: list[Conv2D] = [self.stem] + [c for blk in self.blocks for c in blk.convs()]
        self.conv_block: dict[int, int] = {0: 0}  # conv index -> index of the residual block computing it
        for i, c in enumerate(self.convs):
            c.index = i
        for j, blk in enumerate(self.blocks):
            for c in blk.convs():
                self.conv_block[c.index] = j

    @property
    def arch(self) -> dict:
        return {"family": self.family, "dataset": self.dataset, "size": self.size}

    def __call__(self, images: tf.Tensor, training: bool = False) -> tf.Tensor:
        return self.forward(images, training, update=training)[0]

    def forward(self, images, training: bool, update: bool = True, stop_after_block: int | None = None):
        """(logits or None when stopped early, {conv index: raw conv output}, [block outputs])."""
        conv_outs: dict[int, tf.Tensor] = {}
        block_outs: list[tf.Tensor] = []
        x = self.stem(tf.cast(images, tf.float32))
        conv_outs[0] = x
        if self.dataset == "ilsvrc12":
            x = tf.nn.max_pool2d(x, 3, 2, "SAME")
        for j, blk in enumerate(self.blocks):
            x = blk(x, training, update, conv_outs)
            block_outs.append(x)
            if stop_after_block is not None and j >= stop_after_block:
                return None, conv_outs, block_outs
        x = tf.nn.relu(self.final_bn(x, training, update))
        return self.dense(tf.reduce_mean(x, [1, 2])), conv_outs, block_outs

    def set_bn_decay(self, decay: float | None) -> None:
        """A training setting, not part of the checkpoint: short runs need a smaller decay than 0.997 for
        usable moving statistics (set before the first step is traced)."""
        if decay is not None:
            for bn in self.batch_norms():
                bn.decay = float(decay)

    def batch_norms(self) -> list[BatchNorm]:
        return [bn for blk in self.blocks for bn in blk.bns] + [self.final_bn]

    def decay_variables(self) -> list[tf.Variable]:
        """PocketFlow's weight decay set: every trainable variable but the BN ones (conv kernels, dense)."""
        return [c.kernel for c in self.convs] + [self.dense.kernel, self.dense.bias]

    def model_variables(self) -> list[tf.Variable]:
        """Every trainable variable, in a fixed order."""
        out = []
        for blk_or_stem in [self.stem, *self.blocks]:
            if isinstance(blk_or_stem, Conv2D):
                out.append(blk_or_stem.kernel)
                continue
            for bn in blk_or_stem.bns:
                out += [bn.gamma, bn.beta]
            out += [c.kernel for c in blk_or_stem.convs()]
        return out + [self.final_bn.gamma, self.final_bn.beta, self.dense.kernel, self.dense.bias]

    def copy_from(self, other: ResNet) -> None:
        """Assign every variable (trainable or not, masks included) from a model of the same architecture."""
        for a, b in zip(self.variables, other.variables, strict=True):
            a.assign(tf.convert_to_tensor(b))


class AuxHead(tf.Module):
    """DCP's discrimination-aware head (Eq. 4-5): BN -> ReLU -> global average pool -> FC (-> softmax CE).

    PocketFlow: tf.layers.batch_normalization (training=True always, momentum 0.99, epsilon 1e-3) and a
    Glorot-initialised dense layer; the paper: PyTorch BN and Linear."""

    def __init__(self, label: str, channels: int, num_classes: int, family: str, seed):
        super().__init__(name=label)
        decay, eps = (0.99, 1e-3) if family == "pocketflow" else BN_SETTINGS["paper"]
        self.always_train = family == "pocketflow"
        self.bn = BatchNorm(f"{label}.bn", channels, decay=decay, epsilon=eps)
        self.fc = Dense(f"{label}.fc", channels, num_classes, seed=seed, init="glorot")

    def __call__(self, x: tf.Tensor, training: bool, update: bool = True) -> tf.Tensor:
        h = tf.nn.relu(self.bn(x, training or self.always_train, update))
        return self.fc(tf.reduce_mean(h, [1, 2]))

    @property
    def trainable(self) -> list[tf.Variable]:
        return [self.bn.gamma, self.bn.beta, self.fc.kernel, self.fc.bias]


def build(arch: dict, seed: int = 0) -> ResNet:
    return ResNet(arch["family"], arch["dataset"], int(arch["size"]), seed=seed)


def layer_names(model: ResNet) -> Sequence[str]:
    return [c.label for c in model.convs]
