"""Layer specs of the papers' architectures, for counting without a framework.

Each builder returns a list of `shared.flops` layer specs. Roles: `stem` (first conv), `prunable`
(convs inside residual blocks: the ones DSP's wrappers take), `shortcut` (projection convs), `head`
(classifier). The framework adapters produce the same specs from real models; tests compare the two.

Registry names (see `ARCHS`): `cifar-resnet{20,32,44,56,110}-{A,B}` (A: parameter-free zero-pad
shortcut; B: 1x1 conv + BN projection), `imagenet-resnet{18,34,50,101}` (torchvision v1.5),
`ista-resnet20`, `ista-cnn4`, `ista-convnet-32-64-64-128` (the ISTA paper's reference ConvNet).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from shared.errors import UserError
from shared.flops import Add, BatchNorm, Conv, LayerSpec, Linear, Pool

# ----------------------------------------------------------------------------------------------------
# CIFAR ResNet (He et al. 2016, Sec. 4.2): 6n+2 layers, widths 16/32/64
# ----------------------------------------------------------------------------------------------------


def cifar_resnet(depth: int, shortcut: str = "B", num_classes: int = 10) -> list[LayerSpec]:
    if (depth - 2) % 6 != 0 or depth < 8:
        raise UserError(f"CIFAR ResNet depth must be 6n+2 (20, 32, 44, 56, 110), got {depth}")
    if shortcut not in ("A", "B"):
        raise UserError(f"shortcut must be 'A' (zero-pad) or 'B' (1x1 conv + BN), got {shortcut!r}")
    n = (depth - 2) // 6
    specs: list[LayerSpec] = [
        Conv("conv_1_3x3", 3, 16, 3, 32, role="stem"),
        BatchNorm("bn_1", 16, 32, role="stem"),
    ]
    c_in, hw = 16, 32
    for stage, width in enumerate((16, 32, 64), start=1):
        for i in range(n):
            stride = 2 if (stage > 1 and i == 0) else 1
            hw_out = hw // stride
            p = f"stage_{stage}.{i}"
            specs += [
                Conv(f"{p}.conv_a", c_in, width, 3, hw_out, role="prunable"),
                BatchNorm(f"{p}.bn_a", width, hw_out, role="prunable"),
                Conv(f"{p}.conv_b", width, width, 3, hw_out, role="prunable"),
                BatchNorm(f"{p}.bn_b", width, hw_out, role="prunable"),
            ]
            if shortcut == "B" and (stride != 1 or c_in != width):
                specs += [
                    Conv(f"{p}.downsample.0", c_in, width, 1, hw_out, role="shortcut"),
                    BatchNorm(f"{p}.downsample.1", width, hw_out, role="shortcut"),
                ]
            specs.append(Add(f"{p}.add", width, hw_out))
            c_in, hw = width, hw_out
    specs += [Pool("avgpool", 64, 1), Linear("classifier", 64, num_classes)]
    return specs


# ----------------------------------------------------------------------------------------------------
# ImageNet ResNet, torchvision v1.5 (stride in the 3x3 conv of the bottleneck), 224x224 input
# ----------------------------------------------------------------------------------------------------

_IMAGENET_BLOCKS = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
}


def imagenet_resnet(depth: int, num_classes: int = 1000, image_size: int = 224) -> list[LayerSpec]:
    if depth not in _IMAGENET_BLOCKS:
        raise UserError(f"ImageNet ResNet depth must be one of {sorted(_IMAGENET_BLOCKS)}, got {depth}")
    kind, counts = _IMAGENET_BLOCKS[depth]
    expansion = 1 if kind == "basic" else 4
    hw = image_size // 2
    specs: list[LayerSpec] = [Conv("conv1", 3, 64, 7, hw, role="stem"), BatchNorm("bn1", 64, hw, role="stem")]
    hw //= 2
    specs.append(Pool("maxpool", 64, hw))
    c_in = 64
    for stage, (blocks, width) in enumerate(zip(counts, (64, 128, 256, 512)), start=1):
        for i in range(blocks):
            stride = 2 if (stage > 1 and i == 0) else 1
            hw_out = hw // stride
            p = f"layer{stage}.{i}"
            c_out = width * expansion
            if kind == "basic":
                convs = [(c_in, width, 3, hw_out), (width, width, 3, hw_out)]
            else:
                convs = [(c_in, width, 1, hw), (width, width, 3, hw_out), (width, c_out, 1, hw_out)]
            for j, (ci, co, k, h) in enumerate(convs, start=1):
                specs += [
                    Conv(f"{p}.conv{j}", ci, co, k, h, role="prunable"),
                    BatchNorm(f"{p}.bn{j}", co, h, role="prunable"),
                ]
            if stride != 1 or c_in != c_out:
                specs += [
                    Conv(f"{p}.downsample.0", c_in, c_out, 1, hw_out, role="shortcut"),
                    BatchNorm(f"{p}.downsample.1", c_out, hw_out, role="shortcut"),
                ]
            specs.append(Add(f"{p}.add", c_out, hw_out))
            c_in, hw = c_out, hw_out
    specs += [Pool("avgpool", c_in, 1), Linear("fc", c_in, num_classes)]
    return specs


# ----------------------------------------------------------------------------------------------------
# ISTA (Ye et al. 2018): the released code's resnet20 variant and cnn4 (research/ista.md, Sec. 3)
# ----------------------------------------------------------------------------------------------------

ISTA_RESNET20_WIDTHS = (16, 32, 64)


def ista_resnet20(c0_widths: Sequence[int] | None = None, num_classes: int = 10) -> list[LayerSpec]:
    """The original code's `resnet20`: beta-only BNs on the stem, c1 and shortcuts; gamma+beta BNs on
    the nine block-first convs (c0, the only prunable ones) and on the logits; 2x2 stride-2 conv
    shortcuts; a 1x1 conv classifier. `c0_widths` gives the kept c0 channels of a compressed model."""
    c0_widths = list(c0_widths) if c0_widths is not None else [w for w in ISTA_RESNET20_WIDTHS for _ in range(3)]
    if len(c0_widths) != 9:
        raise UserError(f"ista resnet20 has 9 c0 layers, got {len(c0_widths)} widths")
    specs: list[LayerSpec] = [
        Conv("first_conv", 3, 16, 3, 32, role="stem"),
        BatchNorm("first_conv/BatchNorm", 16, 32, scale=False, role="stem"),
    ]
    c_in, hw = 16, 32
    for g, width in enumerate(ISTA_RESNET20_WIDTHS):
        for b in range(3):
            stride = 2 if (g > 0 and b == 0) else 1
            hw_out = hw // stride
            mid = c0_widths[3 * g + b]
            p = f"g{g}b{b}"
            specs += [
                Conv(f"{p}c0", c_in, mid, 3, hw_out, role="prunable"),
                BatchNorm(f"{p}c0/BatchNorm", mid, hw_out, role="prunable"),
                Conv(f"{p}c1", mid, width, 3, hw_out, role="block"),
                BatchNorm(f"{p}c1/BatchNorm", width, hw_out, scale=False, role="block"),
            ]
            if stride != 1:
                specs += [
                    Conv(f"{p}proj", c_in, width, 2, hw_out, role="shortcut"),
                    BatchNorm(f"{p}proj/BatchNorm", width, hw_out, scale=False, role="shortcut"),
                ]
            specs.append(Add(f"{p}add", width, hw_out))
            c_in, hw = width, hw_out
    specs += [
        Pool("avgpool", 64, 1),
        Conv("logits", 64, num_classes, 1, 1, role="head"),
        BatchNorm("logits/BatchNorm", num_classes, 1, role="head"),
    ]
    return specs


def ista_cnn4(widths: Sequence[int] = (96, 192, 192, 384), num_classes: int = 10) -> list[LayerSpec]:
    """The original code's `cnn4` (the paper's ConvNet): conv5x5-pool, conv5x5-pool, conv3x3-pool, a 4x4
    VALID conv as fc1, a 1x1 conv to the logits; every conv has a gamma+beta BN."""
    if len(widths) != 4:
        raise UserError(f"cnn4 has 4 hidden layers, got widths {tuple(widths)}")
    w1, w2, w3, w4 = widths
    layers = [("conv1", 3, w1, 5, 32), ("conv2", w1, w2, 5, 16), ("conv3", w2, w3, 3, 8), ("fc1", w3, w4, 4, 1)]
    specs: list[LayerSpec] = []
    for i, (name, ci, co, k, hw) in enumerate(layers):
        specs += [Conv(name, ci, co, k, hw, role="prunable"), BatchNorm(f"{name}/BatchNorm", co, hw, role="prunable")]
        if i < 3:
            specs.append(Pool(f"pool{i + 1}", co, hw // 2))
    specs += [
        Conv("logits", w4, num_classes, 1, 1, role="head"),
        BatchNorm("logits/BatchNorm", num_classes, 1, role="head"),
    ]
    return specs


# ----------------------------------------------------------------------------------------------------
# DCP (Zhuang et al. 2018): PocketFlow's ResNets and the paper's networks, at a pruning rate eta
# ----------------------------------------------------------------------------------------------------


def dcp_kept(channels: int, prune_ratio: float) -> int:
    """Input channels a DCP-pruned conv keeps: c - floor(eta c) (the authors' rule; PocketFlow's loop,
    adding one channel while 1 - kept/c > eta, stops at ceil(c (1 - eta)), the same number). The 1e-9
    keeps e.g. 0.29 * 100 = 28.999... from flooring to 28."""
    return int(channels) - math.floor(prune_ratio * channels + 1e-9)


_POCKETFLOW_IMAGENET = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
    200: ("bottleneck", (3, 24, 36, 3)),
}


def pocketflow_resnet_plan(size: int, dataset: str) -> tuple[str, tuple[int, ...], tuple[int, ...]]:
    """(block kind, blocks per stage, stage widths) of PocketFlow's TF-official v2 ResNet."""
    if dataset == "cifar10":
        if size < 8 or (size - 2) % 6:
            raise UserError(f"PocketFlow's CIFAR ResNet needs resnet_size = 6n+2 >= 8 (20, 32, 44, 56), got {size}")
        n = (size - 2) // 6
        return "basic", (n, n, n), (16, 32, 64)
    if dataset == "ilsvrc12":
        if size not in _POCKETFLOW_IMAGENET:
            raise UserError(
                f"PocketFlow's ImageNet ResNet has resnet_size in {sorted(_POCKETFLOW_IMAGENET)}, got {size}"
            )
        kind, counts = _POCKETFLOW_IMAGENET[size]
        return kind, counts, (64, 128, 256, 512)
    raise UserError(f"unknown dataset {dataset!r} for PocketFlow's ResNet; expected cifar10 or ilsvrc12")


def pocketflow_resnet(
    size: int = 20, dataset: str = "cifar10", prune_ratio: float = 0.0, slim: bool = False
) -> list[LayerSpec]:
    """PocketFlow's ResNets (TF-official v2, pre-activation): CIFAR 3x3 stem with 16 filters, ImageNet
    7x7/2 stem with 64 filters + 3x3/2 max-pool and 1001 classes; a 1x1 projection in the FIRST block of
    EVERY stage (also stage 1, where the shapes match), so ResNet-20 has 22 convs. Convs are listed in
    TF graph-creation order (the projection before conv1). At `prune_ratio` eta every conv but the stem
    reads c - floor(eta c) input channels (PocketFlow's dis-chn-pruned learner prunes them all; output
    widths are unchanged: the count of PocketFlow's transformed graph without its 1x1 gathers). With
    `slim`, a block-internal conv also loses the output channels its successor no longer reads, with the
    BN between (the physically slimmed network that dcp_tf exports)."""
    kind, counts, widths = pocketflow_resnet_plan(size, dataset)
    cifar = dataset == "cifar10"
    expansion = 1 if kind == "basic" else 4
    kept = lambda c: dcp_kept(c, prune_ratio)  # noqa: E731
    if cifar:
        hw, c_in = 32, 16
        specs: list[LayerSpec] = [Conv("conv0", 3, 16, 3, hw, role="stem")]
    else:
        hw, c_in = 112, 64
        specs = [Conv("conv0", 3, 64, 7, hw, role="stem")]
        hw //= 2
        specs.append(Pool("maxpool", 64, hw))
    for s, (blocks, width) in enumerate(zip(counts, widths)):
        for b in range(blocks):
            stride = 2 if (s > 0 and b == 0) else 1
            hw_out = hw // stride
            c_out = width * expansion
            p = f"stage{s + 1}.block{b}"
            specs.append(BatchNorm(f"{p}.bn1", c_in, hw, role="block"))
            if b == 0:
                specs.append(Conv(f"{p}.proj", kept(c_in), c_out, 1, hw_out, role="shortcut"))
            if kind == "basic":
                convs = [(c_in, width, 3, hw_out), (width, width, 3, hw_out)]
            else:
                convs = [(c_in, width, 1, hw), (width, width, 3, hw_out), (width, c_out, 1, hw_out)]
            for j, (ci, co, k, h) in enumerate(convs, start=1):
                if j > 1:
                    specs.append(BatchNorm(f"{p}.bn{j}", kept(ci) if slim else ci, h, role="prunable"))
                co = kept(co) if (slim and j < len(convs)) else co
                specs.append(Conv(f"{p}.conv{j}", kept(ci), co, k, h, role="prunable"))
            specs.append(Add(f"{p}.add", c_out, hw_out))
            c_in, hw = c_out, hw_out
    classes = 10 if cifar else 1001
    specs += [BatchNorm("final_bn", c_in, hw, role="head"), Pool("avgpool", c_in, 1), Linear("dense", c_in, classes)]
    return specs


def dcp_preresnet(depth: int = 56, prune_ratio: float = 0.0, num_classes: int = 10) -> list[LayerSpec]:
    """The DCP paper's CIFAR PreResNet (the authors' PyTorch model): 3x3 stem with 16 filters and no BN,
    pre-activation basic blocks (BN-ReLU-conv3x3-BN-ReLU-conv3x3), a 1x1 projection only where the shape
    changes, final BN-ReLU, average pool, FC; no conv biases. PreResNet-56: 855,578 params, 1.26e8 MACs.
    At `prune_ratio` eta only conv2 of each block loses input channels, and with them conv1's output
    channels and the BN between (physically removed: the residual width is untouched)."""
    if depth < 8 or (depth - 2) % 6:
        raise UserError(f"PreResNet depth must be 6n+2 >= 8 (20, 56, 110), got {depth}")
    n = (depth - 2) // 6
    specs: list[LayerSpec] = [Conv("conv", 3, 16, 3, 32, role="stem")]
    c_in, hw = 16, 32
    for s, width in enumerate((16, 32, 64)):
        for b in range(n):
            stride = 2 if (s > 0 and b == 0) else 1
            hw_out = hw // stride
            mid = dcp_kept(width, prune_ratio)
            p = f"layer{s + 1}.{b}"
            specs += [
                BatchNorm(f"{p}.bn1", c_in, hw, role="block"),
                Conv(f"{p}.conv1", c_in, mid, 3, hw_out, role="block"),
                BatchNorm(f"{p}.bn2", mid, hw_out, role="prunable"),
                Conv(f"{p}.conv2", mid, width, 3, hw_out, role="prunable"),
            ]
            if stride != 1 or c_in != width:
                specs.append(Conv(f"{p}.downsample", c_in, width, 1, hw_out, role="shortcut"))
            specs.append(Add(f"{p}.add", width, hw_out))
            c_in, hw = width, hw_out
    specs += [BatchNorm("bn", 64, hw, role="head"), Pool("avgpool", 64, 1), Linear("fc", 64, num_classes)]
    return specs


def dcp_imagenet_resnet(depth: int = 18, prune_ratio: float = 0.0, num_classes: int = 1000) -> list[LayerSpec]:
    """The paper's ImageNet ResNets (torchvision v1.5) at pruning rate eta: only block-internal convs lose
    input channels (basic: conv2; bottleneck: conv2 and conv3), with the producing conv's output channels
    and BN; the stem, projections, residual widths and fc are unchanged."""
    specs = []
    for spec in imagenet_resnet(depth, num_classes):
        name = spec.name
        if isinstance(spec, Conv) and spec.role == "prunable":
            last = name.endswith(".conv2") if depth < 50 else name.endswith(".conv3")
            first = name.endswith(".conv1")
            c_in = spec.c_in if first else dcp_kept(spec.c_in, prune_ratio)
            c_out = spec.c_out if last else dcp_kept(spec.c_out, prune_ratio)
            spec = Conv(name, c_in, c_out, spec.kernel, spec.out_hw, role="prunable")
        elif isinstance(spec, BatchNorm) and spec.role == "prunable":
            last = name.endswith(".bn2") if depth < 50 else name.endswith(".bn3")
            if not last:
                spec = BatchNorm(name, dcp_kept(spec.channels, prune_ratio), spec.out_hw, role="prunable")
        specs.append(spec)
    return specs


# ----------------------------------------------------------------------------------------------------
# Registry
# ----------------------------------------------------------------------------------------------------


def _registry() -> dict[str, Callable[[], list[LayerSpec]]]:
    archs: dict[str, Callable[[], list[LayerSpec]]] = {}
    for depth in (20, 32, 44, 56, 110):
        for sc in ("A", "B"):
            archs[f"cifar-resnet{depth}-{sc}"] = lambda d=depth, s=sc: cifar_resnet(d, s)
    for depth in _IMAGENET_BLOCKS:
        archs[f"imagenet-resnet{depth}"] = lambda d=depth: imagenet_resnet(d)
    archs["ista-resnet20"] = ista_resnet20
    archs["ista-cnn4"] = ista_cnn4
    archs["ista-convnet-32-64-64-128"] = lambda: ista_cnn4((32, 64, 64, 128))
    for size in (20, 32, 44, 56):
        archs[f"pocketflow-resnet{size}"] = lambda d=size: pocketflow_resnet(d, "cifar10")
    for size in _POCKETFLOW_IMAGENET:
        archs[f"pocketflow-imagenet-resnet{size}"] = lambda d=size: pocketflow_resnet(d, "ilsvrc12")
    archs["dcp-preresnet56"] = lambda: dcp_preresnet(56)
    return archs


ARCHS = _registry()


def build(name: str) -> list[LayerSpec]:
    if name not in ARCHS:
        raise UserError(f"unknown architecture {name!r}; expected one of {sorted(ARCHS)}")
    return ARCHS[name]()
