"""Layer specs of the papers' architectures, for counting without a framework.

Each builder returns a list of `shared.flops` layer specs. Roles: `stem` (first conv), `prunable`
(convs inside residual blocks: the ones DSP's wrappers take), `shortcut` (projection convs), `head`
(classifier). The framework adapters produce the same specs from real models; tests compare the two.

Registry names (see `ARCHS`): `cifar-resnet{20,32,44,56,110}-{A,B}` (A: parameter-free zero-pad
shortcut; B: 1x1 conv + BN projection), `imagenet-resnet{18,34,50,101}` (torchvision v1.5),
`ista-resnet20`, `ista-cnn4`, `ista-convnet-32-64-64-128` (the ISTA paper's reference ConvNet).
"""

from __future__ import annotations

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
    return archs


ARCHS = _registry()


def build(name: str) -> list[LayerSpec]:
    if name not in ARCHS:
        raise UserError(f"unknown architecture {name!r}; expected one of {sorted(ARCHS)}")
    return ARCHS[name]()
