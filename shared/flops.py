"""Framework-free FLOPs and parameter counting from layer specs, under named conventions.

Each framework adapter (`<paper>/flops.py`) turns a model into a list of layer specs; the counting
itself happens here, so every subproject counts the same way. "FLOPs" in the pruning literature are
multiply-accumulates (MACs) of the conv and fully-connected layers: that is what `macs` holds.

Conventions (pick by name, every reported number states one):

- `conv-fc`: MACs of convs + FC; params = every trainable tensor (conv/FC weights and biases, BN
  gamma/beta). The usual literature count (ResNet-56 option A: 125.49M MACs, 0.85M params).
- `weights-only`: MACs of convs + FC; params = conv/FC weights only (Distiller's count).
- `dsp-prunable`: only the prunable 3x3 convs of the residual blocks (DSP's README P.FLOPS/P.PARAMS);
  params = their weights. Kernel-granular: a conv spec with `kernel_pairs` counts only the kept
  (filter, input channel) pairs.
- `conv-only`: MACs of the convs only (PocketFlow's channel learner sums TF's per-Conv2D flops
  statistics, no FC); params = conv weights. PocketFlow ResNet-20: 41,074,688.
- `ista-slim`: MACs of convs + FC; params = weights and biases + BN gamma, beta, moving mean and moving
  variance (the slim model_analyzer count that ISTA's `cifar10_eval` prints; a beta-only BN counts 3
  per channel).
- `ekg-code`: EKG's `check_complexity`: "FLOPs" = MACs of convs + FC + 2*H*W*C per BN; params as
  `ista-slim` (BN moving statistics included). EKG's `search_target_rate` is a fraction of this total.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


def _pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


@dataclass(frozen=True)
class Conv:
    """A 2-D convolution. `out_hw` is the output map size. `kernel_pairs` (optional) is the number of
    kept (filter, input-channel) kernel pairs when the conv is pruned at kernel granularity."""

    name: str
    c_in: int
    c_out: int
    kernel: int | tuple[int, int]
    out_hw: int | tuple[int, int]
    groups: int = 1
    bias: bool = False
    role: str = ""
    kernel_pairs: int | None = None

    @property
    def pairs(self) -> int:
        dense = self.c_out * (self.c_in // self.groups)
        return dense if self.kernel_pairs is None else int(self.kernel_pairs)

    @property
    def weight_params(self) -> int:
        kh, kw = _pair(self.kernel)
        return self.pairs * kh * kw

    @property
    def macs(self) -> int:
        h, w = _pair(self.out_hw)
        return self.weight_params * h * w


@dataclass(frozen=True)
class Linear:
    name: str
    d_in: int
    d_out: int
    bias: bool = True
    role: str = "head"

    @property
    def weight_params(self) -> int:
        return self.d_in * self.d_out

    @property
    def macs(self) -> int:
        return self.d_in * self.d_out


@dataclass(frozen=True)
class BatchNorm:
    """Batch norm over `channels`; `scale`/`center` say whether gamma/beta exist (slim allows beta only)."""

    name: str
    channels: int
    out_hw: int | tuple[int, int] = 1
    scale: bool = True
    center: bool = True
    role: str = ""


@dataclass(frozen=True)
class Pool:
    name: str
    channels: int
    out_hw: int | tuple[int, int]
    role: str = ""


@dataclass(frozen=True)
class Add:
    name: str
    channels: int
    out_hw: int | tuple[int, int]
    role: str = ""


LayerSpec = Conv | Linear | BatchNorm | Pool | Add


@dataclass(frozen=True)
class Convention:
    name: str
    description: str
    roles: frozenset[str] | None = None  # None: every layer; else only convs/linears with these roles
    include_fc: bool = True
    bias: bool = True
    bn: str = "affine"  # "none" | "affine" | "affine+stats"
    bn_flops: int = 0  # FLOPs counted per BN output element (EKG's counter: 2)


CONVENTIONS: dict[str, Convention] = {
    c.name: c
    for c in [
        Convention("conv-fc", "MACs of conv+FC; params = all trainable tensors (weights, biases, BN gamma/beta)"),
        Convention("weights-only", "MACs of conv+FC; params = conv/FC weights only", bias=False, bn="none"),
        Convention(
            "dsp-prunable",
            "prunable 3x3 residual convs only (DSP README), kernel-granular; params = their weights",
            roles=frozenset({"prunable"}),
            include_fc=False,
            bias=False,
            bn="none",
        ),
        Convention(
            "conv-only",
            "MACs of the convs only, no FC; params = conv weights (PocketFlow's per-Conv2D op statistics)",
            include_fc=False,
            bias=False,
            bn="none",
        ),
        Convention(
            "ista-slim",
            "MACs of conv+FC; params = weights, biases, BN gamma/beta and moving mean/variance (slim count)",
            bn="affine+stats",
        ),
        Convention(
            "ekg-code",
            "EKG code's check_complexity: 'FLOPs' = conv+FC MACs + 2*H*W*C per BN; params = weights, FC bias, "
            "BN gamma/beta and moving mean/variance",
            bn="affine+stats",
            bn_flops=2,
        ),
    ]
}


@dataclass(frozen=True)
class Counts:
    macs: int
    params: int
    convention: str
    per_layer: tuple[tuple[str, int, int], ...] = field(default=(), repr=False)

    def reduction_pct(self, base: Counts) -> tuple[float, float]:
        """(MACs reduction %, params reduction %) of self relative to `base` = 100 (1 - self/base)."""
        if base.convention != self.convention:
            raise ValueError(f"cannot compare {self.convention} counts with {base.convention} counts")
        return 100.0 * (1 - self.macs / base.macs), 100.0 * (1 - self.params / base.params)


def get_convention(name: str) -> Convention:
    if name not in CONVENTIONS:
        from shared.errors import UserError

        raise UserError(f"unknown counting convention {name!r}; expected one of {sorted(CONVENTIONS)}")
    return CONVENTIONS[name]


def _layer_counts(layer: LayerSpec, conv: Convention) -> tuple[int, int]:
    if isinstance(layer, (Conv, Linear)):
        if conv.roles is not None and layer.role not in conv.roles:
            return 0, 0
        if isinstance(layer, Linear) and not conv.include_fc:
            return 0, 0
        out_channels = layer.c_out if isinstance(layer, Conv) else layer.d_out
        bias = out_channels if (layer.bias and conv.bias) else 0
        return layer.macs, layer.weight_params + bias
    if isinstance(layer, BatchNorm):
        if conv.roles is not None or conv.bn == "none":
            return 0, 0
        per_channel = int(layer.scale) + int(layer.center) + (2 if conv.bn == "affine+stats" else 0)
        h, w = _pair(layer.out_hw)
        return conv.bn_flops * h * w * layer.channels, per_channel * layer.channels
    return 0, 0  # pooling and additions: no weights; not counted as MACs by these conventions


def count(specs: Iterable[LayerSpec], convention: str = "conv-fc") -> Counts:
    conv = get_convention(convention)
    per_layer = []
    macs = params = 0
    for layer in specs:
        m, p = _layer_counts(layer, conv)
        macs += m
        params += p
        if m or p:
            per_layer.append((layer.name, m, p))
    return Counts(macs, params, conv.name, tuple(per_layer))
