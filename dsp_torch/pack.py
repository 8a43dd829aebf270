"""Packing a pruned (masked) model into a smaller dense network that is really faster.

The authors' packer turns every group of a pruned conv into its own branch (gather, small conv,
concatenate, index_add). On CPUs and GPUs the many tiny convs cost more than they save: their
packed ResNet-56 g=4 runs at about half the dense model's speed although it removes 65 % of the
FLOPs. Here every residual block becomes one short chain of plain convs instead:

    out = relu(shortcut(x) (+)_Q  conv_k(... relu(conv_1(x[:, U])) ...))

- U: the input channels any kept kernel of the first conv reads (gathered only when that pays);
- the hidden widths: the filters that are alive (non-zero kernels on live inputs, or a non-zero BN
  bias) and used by the next conv; dead ones are dropped;
- Q: the output channels the block writes; the branch is added into the shortcut at Q (index_add) or,
  when Q covers (nearly) every channel, as a plain add;
- BN is folded into the conv weights and biases (inference), activations run in channels_last;
- widths are rounded up to a multiple of `align` (default 8) with zero filters (exact): CPU conv
  kernels vectorise over output channels, so an odd width (e.g. 49) runs slower than the next multiple
  of 8 or 16 (measured on an AVX-512 CPU with oneDNN, batch 128).

Intra-channel group sparsity inside one conv is not kept (a conv reads the union of its groups'
channels): at these widths small per-group convs are slower than one conv over the union. The packed
model's MACs (`packed_macs`) are therefore higher than the DSP kernel count; both are reported.
`dsp_torch.pack_grouped` keeps part of the group structure (grouped convs, groups merged into k
convs): fewer MACs, but its extra gathers and concatenations make it slower on CPUs (README).

The result computes exactly what the masked model computes (up to float reassociation) and is saved
as TorchScript (`torch.jit.script` + `torch.jit.freeze`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from dsp_torch.models.cifar_resnet import CifarResNet, ResNetBasicblock

# ----------------------------------------------------------------------------------------------------
# Inference modules (scriptable)
# ----------------------------------------------------------------------------------------------------


class PackedBlock(nn.Module):
    """relu(shortcut(x) + body(x)), the body reading channels U of x and writing channels Q."""

    def __init__(
        self,
        body: nn.Module,
        shortcut: nn.Module | None,
        in_index: torch.Tensor | None,
        out_index: torch.Tensor | None,
        has_body: bool,
    ):
        super().__init__()
        self.body = body
        self.shortcut = shortcut if shortcut is not None else nn.Identity()
        self.gather = in_index is not None
        self.scatter = out_index is not None
        self.has_body = has_body
        self.register_buffer("in_index", in_index if in_index is not None else torch.zeros(0, dtype=torch.long))
        self.register_buffer("out_index", out_index if out_index is not None else torch.zeros(0, dtype=torch.long))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sc = self.shortcut(x)
        if not self.has_body:
            return torch.relu(sc)
        h = x
        if self.gather:  # channel gather on the NHWC view keeps the channels_last layout
            h = x.permute(0, 2, 3, 1).index_select(3, self.in_index).permute(0, 3, 1, 2)
        h = self.body(h)
        if self.scatter:
            out = sc.permute(0, 2, 3, 1).index_add(3, self.out_index, h.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        else:
            out = sc + h
        return torch.relu(out)


class PackedNet(nn.Module):
    def __init__(self, stem: nn.Module, blocks: list[PackedBlock], fc: nn.Linear, channels_last: bool):
        super().__init__()
        self.stem = stem
        self.blocks = nn.Sequential(*blocks)
        self.fc = fc
        self.channels_last = channels_last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        x = self.blocks(self.stem(x))
        return self.fc(torch.flatten(torch.nn.functional.adaptive_avg_pool2d(x, 1), 1))


# ----------------------------------------------------------------------------------------------------
# From masked model to packed plan
# ----------------------------------------------------------------------------------------------------


@dataclass
class ConvBN:
    """A conv with its BN folded: y = conv(x, weight) + bias (weights already masked)."""

    weight: torch.Tensor
    bias: torch.Tensor
    stride: int
    padding: int


@dataclass
class BlockPlan:
    in_index: list[int]
    hidden: list[list[int]]
    out_index: list[int]
    in_channels: int
    out_channels: int
    convs: list[ConvBN]
    shortcut: ConvBN | None
    notes: dict = field(default_factory=dict)


@torch.no_grad()
def fold_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> ConvBN:
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    weight = conv.weight.detach().clone()
    if hasattr(conv, "mask"):
        weight = weight * conv.mask
    bias = bn.bias - bn.running_mean * scale
    if conv.bias is not None:
        bias = bias + conv.bias * scale
    return ConvBN(weight * scale.view(-1, 1, 1, 1), bias.detach().clone(), conv.stride[0], conv.padding[0])


def _block_convs(block: nn.Module) -> tuple[list[ConvBN], ConvBN | None]:
    """The chain of (conv, BN) of a residual block and its projection shortcut, BN folded."""
    if isinstance(block, ResNetBasicblock):
        pairs = [(block.conv_a, block.bn_a), (block.conv_b, block.bn_b)]
    else:  # torchvision BasicBlock / Bottleneck
        pairs = [
            (getattr(block, f"conv{i}"), getattr(block, f"bn{i}")) for i in (1, 2, 3) if hasattr(block, f"conv{i}")
        ]
    shortcut = None
    if block.downsample is not None:
        shortcut = fold_bn(block.downsample[0], block.downsample[1])
    return [fold_bn(c, b) for c, b in pairs], shortcut


def plan_block(convs: list[ConvBN], shortcut: ConvBN | None) -> BlockPlan:
    """Which channels each conv of the chain really needs (see the module docstring)."""
    c_in = convs[0].weight.shape[1]
    c_out = convs[-1].weight.shape[0]
    kernel_used = [(c.weight.abs().sum(dim=(2, 3)) > 0) for c in convs]  # (out, in) per conv
    # Forward: live outputs given live inputs (a filter with no kernel on a live input outputs its bias).
    live_in = torch.ones(c_in, dtype=torch.bool)
    live = []
    for used, conv in zip(kernel_used, convs):
        reads = used[:, live_in].any(dim=1)
        out_live = reads | (conv.bias != 0)
        live.append(out_live)
        live_in = out_live
    # Backward: hidden channels the next conv does not read are dropped.
    keep = [None] * len(convs)
    keep[-1] = live[-1]
    for i in range(len(convs) - 2, -1, -1):
        keep[i] = live[i] & kernel_used[i + 1][keep[i + 1]].any(dim=0)
    reads_input = kernel_used[0][keep[0]].any(dim=0)
    idx = [torch.nonzero(k).flatten().tolist() for k in keep]
    return BlockPlan(torch.nonzero(reads_input).flatten().tolist(), idx[:-1], idx[-1], c_in, c_out, convs, shortcut)


def _round_up(n: int, align: int) -> int:
    return max(align, align * math.ceil(n / align)) if n else 0


def _conv(weight: torch.Tensor, bias: torch.Tensor, stride: int, padding: int) -> nn.Conv2d:
    conv = nn.Conv2d(weight.shape[1], weight.shape[0], weight.shape[2], stride, padding, bias=True)
    conv.weight.data.copy_(weight)
    conv.bias.data.copy_(bias)
    return conv


def _packed_conv(conv: ConvBN, rows: list[int | None], cols: list[int | None]) -> nn.Conv2d:
    """A conv computing conv's filters `rows` from input channels `cols` (None: padding, zero weights)."""
    weight = torch.zeros(len(rows), len(cols), *conv.weight.shape[2:])
    bias = torch.zeros(len(rows))
    r_pos = [i for i, r in enumerate(rows) if r is not None]
    c_pos = [j for j, c in enumerate(cols) if c is not None]
    if r_pos and c_pos:
        src = conv.weight[[rows[i] for i in r_pos]][:, [cols[j] for j in c_pos]]
        weight[torch.tensor(r_pos)[:, None], torch.tensor(c_pos)[None, :]] = src
    if r_pos:
        bias[r_pos] = conv.bias[[rows[i] for i in r_pos]]
    return _conv(weight, bias, conv.stride, conv.padding)


@torch.no_grad()
def build_block(plan: BlockPlan, align: int, gather_below: float, full_above: float) -> PackedBlock:
    """The packed block for a plan. gather_below / full_above: fractions of the block's input / output
    width under / over which the input gather / the output plain add is used."""
    shortcut = (
        None
        if plan.shortcut is None
        else _conv(plan.shortcut.weight, plan.shortcut.bias, plan.shortcut.stride, plan.shortcut.padding)
    )
    if not plan.out_index:  # the branch writes nothing: out = relu(shortcut(x))
        return PackedBlock(nn.Identity(), shortcut, None, None, has_body=False)
    # Inputs. A chain that reads no input at all still runs (its outputs are its biases): it reads
    # channel 0 through a zero weight column, which keeps zero padding exact.
    if not plan.in_index:
        gather, in_ids, cols = True, [0], [None]
    else:
        gather = len(plan.in_index) <= gather_below * plan.in_channels
        in_ids = plan.in_index if gather else list(range(plan.in_channels))
        cols = list(in_ids)
    layers: list[nn.Module] = []
    for conv, hidden in zip(plan.convs[:-1], plan.hidden):
        # at least one (zero) filter, so that an empty layer passes zeros on
        rows = hidden + [None] * (max(1, _round_up(len(hidden), align)) - len(hidden))
        layers += [_packed_conv(conv, rows, cols), nn.ReLU(inplace=True)]
        cols = rows
    q = plan.out_index
    q_size = _round_up(len(q), align)
    scatter = q_size < full_above * plan.out_channels
    if scatter:  # write Q (plus unused channels with zero filters, to reach the aligned width)
        out_ids = q + [c for c in range(plan.out_channels) if c not in set(q)][: q_size - len(q)]
        rows = q + [None] * (len(out_ids) - len(q))
    else:  # write every channel in order; channels outside Q get zero filters
        out_ids = list(range(plan.out_channels))
        rows = [c if c in set(q) else None for c in out_ids]
    layers.append(_packed_conv(plan.convs[-1], rows, cols))
    in_index = torch.tensor(in_ids, dtype=torch.long) if gather and len(in_ids) < plan.in_channels else None
    out_index = torch.tensor(out_ids, dtype=torch.long) if scatter else None
    return PackedBlock(nn.Sequential(*layers), shortcut, in_index, out_index, has_body=True)


# ----------------------------------------------------------------------------------------------------
# Whole networks
# ----------------------------------------------------------------------------------------------------


@dataclass
class PackOptions:
    align: int = 8  # round widths up to this multiple (measured best on AVX-512 CPUs at batch 128)
    gather_below: float = 0.5  # gather the block's inputs when it reads at most this fraction of them
    full_above: float = 0.75  # plain add when the written channels (rounded) exceed this fraction
    channels_last: bool = True


def _residual_blocks(model: nn.Module) -> list[nn.Module]:
    if isinstance(model, CifarResNet):
        return [b for stage in (model.stage_1, model.stage_2, model.stage_3) for b in stage]
    return [b for stage in (model.layer1, model.layer2, model.layer3, model.layer4) for b in stage]


@torch.no_grad()
def plan_model(model: nn.Module) -> list[BlockPlan]:
    return [plan_block(*_block_convs(block)) for block in _residual_blocks(model)]


def stem_and_head(model: nn.Module) -> tuple[nn.Sequential, nn.Linear]:
    """The packed stem (first conv with its BN folded, ReLU, and torchvision's max-pool) and a copy of the
    classifier of a CifarResNet or torchvision ResNet: the parts every packing shares."""
    if isinstance(model, CifarResNet):
        first = fold_bn(model.conv_1_3x3, model.bn_1)
        stem = nn.Sequential(_conv(first.weight, first.bias, first.stride, first.padding), nn.ReLU(inplace=True))
        fc = model.classifier
    else:
        first = fold_bn(model.conv1, model.bn1)
        stem = nn.Sequential(
            _conv(first.weight, first.bias, first.stride, first.padding), nn.ReLU(inplace=True), model.maxpool
        )
        fc = model.fc
    head = nn.Linear(fc.in_features, fc.out_features)
    head.load_state_dict(fc.state_dict())
    return stem, head


@torch.no_grad()
def pack(model: nn.Module, options: PackOptions | None = None) -> PackedNet:
    """The packed eager module (eval mode) of a masked CifarResNet or torchvision ResNet."""
    opts = options or PackOptions()
    model = model.eval()
    stem, head = stem_and_head(model)
    blocks = [build_block(p, opts.align, opts.gather_below, opts.full_above) for p in plan_model(model)]
    net = PackedNet(stem, blocks, head, opts.channels_last).eval()
    if opts.channels_last:
        net = net.to(memory_format=torch.channels_last)
    return net


def to_torchscript(net: PackedNet) -> torch.jit.ScriptModule:
    """Scripted and frozen (constants folded) for deployment."""
    return torch.jit.freeze(torch.jit.script(net.eval()))


@torch.no_grad()
def packed_macs(net: PackedNet, image_size: int = 32) -> int:
    """MACs the packed network really executes (convs at their packed shapes, plus the FC)."""
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        total += module.weight.numel() * output.shape[2] * output.shape[3]

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, nn.Conv2d)]
    try:
        net(torch.zeros(1, 3, image_size, image_size))
    finally:
        for h in handles:
            h.remove()
    return total + net.fc.weight.numel()
