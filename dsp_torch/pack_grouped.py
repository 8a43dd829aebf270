"""Group-aware packings (`pack_model --packing union|grouped|merge2|merge3|auto`): closer to DSP's kernel count.

DSP prunes at the level of (group, input channel): the filters of group g of a conv read only the input
channels U_g (paper Eq. 6-7: a group's kept channels). `dsp_torch.pack` runs one conv per layer over
the union of the U_g, which executes far more MACs than the kernel count. Here each conv of a residual
block becomes one *stage* of a few parts, chosen per conv:

- `union`: one conv over the gathered union of the U_g (exact widths, no rounding);
- `grouped`: ONE grouped conv (`groups=G`) over a gathered input in which each group's channels U_g lie
  contiguously (a channel two groups read is gathered twice); every group is padded to the largest
  |U_g| (inputs: channel 0 through zero weights) and the largest group (outputs: zero filters);
- `merge<k>`: the groups split into at most k sets (the partition with the fewest MACs, searched
  exhaustively), each set one conv over the union of its groups' channels, outputs concatenated;
- `auto`: per conv, the option that runs fastest, timed here on the target batch size (1 thread, torch
  eager, best of a few calls; `choose_by` = "macs" picks the fewest MACs instead, deterministic).

The stage outputs are in group order; the next conv gathers what it reads from them, so no permutation
is ever applied to a hidden tensor (it is folded into the next gather). The block output is written
into the shortcut with a gather from [h, 0] (one zero channel appended for the channels the block does
not write): exact, and in ONNX a Pad + Gather rather than a ScatterND. BN is folded, dead filters
(no kept kernel on a live input and zero folded bias) are dropped as in `dsp_torch.pack`.

The result computes what the masked model computes (up to float reassociation). Its executed MACs
(`dsp_torch.pack.packed_macs`) lie between DSP's kernel count and the union packing's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from dsp_torch.models.cifar_resnet import ResNetBasicblock
from dsp_torch.pack import ConvBN, PackedNet, _block_convs, _conv, _residual_blocks, plan_block, stem_and_head

OPTIONS = ("union", "grouped", "merge2", "merge3")
PACKINGS = OPTIONS + ("auto",)


# ----------------------------------------------------------------------------------------------------
# Inference modules
# ----------------------------------------------------------------------------------------------------


class Part(nn.Module):
    """conv(x[:, index]) (no gather when `index` is None)."""

    def __init__(self, conv: nn.Conv2d, index: list[int] | None):
        super().__init__()
        self.conv = conv
        self.gather = index is not None
        self.register_buffer("index", torch.tensor(index if index is not None else [], dtype=torch.long))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gather:
            x = x.index_select(1, self.index)
        return self.conv(x)


class Stage(nn.Module):
    """The parts of one packed conv, outputs concatenated in part order."""

    def __init__(self, parts: list[Part]):
        super().__init__()
        self.parts = nn.ModuleList(parts)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [p(x) for p in self.parts]
        return outs[0] if len(outs) == 1 else torch.cat(outs, 1)


class GroupedBlock(nn.Module):
    """relu(shortcut(x) + [body(x), 0][:, out_index]), body = stages with ReLU between them."""

    def __init__(self, stages: list[Stage], shortcut: nn.Module | None, out_index: list[int] | None, has_body: bool):
        super().__init__()
        self.stages = nn.ModuleList(stages)
        self.shortcut = shortcut if shortcut is not None else nn.Identity()
        self.has_body = has_body
        self.scatter = out_index is not None
        self.register_buffer("out_index", torch.tensor(out_index if out_index is not None else [], dtype=torch.long))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sc = self.shortcut(x)
        if not self.has_body:
            return torch.relu(sc)
        h = x
        for i, stage in enumerate(self.stages):
            h = stage(h)
            if i + 1 < len(self.stages):
                h = torch.relu(h)
        if self.scatter:  # channel c of the block output = position out_index[c] of [h, zero channel]
            h = F.pad(h, (0, 0, 0, 0, 0, 1)).index_select(1, self.out_index)
        return torch.relu(sc + h)


# ----------------------------------------------------------------------------------------------------
# Building stages
# ----------------------------------------------------------------------------------------------------


@dataclass
class StageSpec:
    """What a stage computes. Each part: (rows, cols) = (filter ids, input positions read; None = a
    zero filter / a zero column reading position 0). `n_groups` > 1: the one part is a grouped conv
    whose group j holds rows [j m_out, (j+1) m_out) and cols [j m_in, (j+1) m_in)."""

    kind: str
    parts: list[tuple[list[int | None], list[int | None]]]
    n_groups: int = 1

    @property
    def out_pos(self) -> list[int | None]:
        return [r for rows, _ in self.parts for r in rows]

    def macs_per_pixel(self, kernel: int) -> int:
        """Multiply-adds per output pixel: rows x (cols / groups) x k^2 per part."""
        return sum(len(rows) * (len(cols) // self.n_groups) for rows, cols in self.parts) * kernel * kernel


def _partitions(items: list[int], k: int):
    """Every partition of `items` into at most k non-empty sets."""
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for p in _partitions(rest, k):
        for i in range(len(p)):
            yield p[:i] + [[first] + p[i]] + p[i + 1 :]
        if len(p) < k:
            yield [[first]] + p


def _up(n: int, align: int) -> int:
    return -(-n // align) * align


def stage_spec(
    kind: str, groups: list[list[int]], kept: torch.Tensor, in_pos: list[int | None], align: int = 1
) -> StageSpec:
    """The stage of kind `kind` for filter groups `groups` (filter ids) of a conv whose (out, in) kept
    kernels are `kept`, reading a tensor whose position p holds input channel in_pos[p] (None: zero).
    `align` > 1 rounds every part's (or group's) filter count up with zero filters."""
    first_pos: dict[int, int] = {}
    for p, c in enumerate(in_pos):
        if c is not None and c not in first_pos:
            first_pos[c] = p
    live = torch.zeros(kept.shape[1], dtype=torch.bool)
    live[list(first_pos)] = True

    def reads(filters: list[int]) -> list[int]:  # input positions these filters read, in position order
        if not filters:
            return []
        used = kept[filters].any(dim=0) & live
        return sorted(first_pos[c] for c in torch.nonzero(used).flatten().tolist())

    groups = [g for g in groups if g]
    if not groups:  # a dead conv: one zero filter passes zeros on
        return StageSpec(kind, [([None], [None])])
    if kind == "grouped" and len(groups) > 1:
        cols = [reads(g) for g in groups]
        m_in, m_out = max(1, max(len(c) for c in cols)), _up(max(len(g) for g in groups), align)
        rows_all = [r for g in groups for r in g + [None] * (m_out - len(g))]
        cols_all = [p for c in cols for p in c + [None] * (m_in - len(c))]
        return StageSpec(kind, [(rows_all, cols_all)], n_groups=len(groups))
    if kind in ("union", "grouped"):
        sets = [list(range(len(groups)))]
    else:
        k = int(kind.removeprefix("merge"))

        def cost(p):
            return sum(len(reads([f for i in s for f in groups[i]])) * sum(len(groups[i]) for i in s) for s in p)

        sets = min(_partitions(list(range(len(groups))), k), key=cost)
    parts = []
    for s in sets:
        rows = [f for i in s for f in groups[i]]
        cols = reads(rows) or [None]  # constant filters read position 0 through zeros
        parts.append((rows + [None] * (_up(len(rows), align) - len(rows)), cols))
    return StageSpec(kind, parts)


def build_stage(spec: StageSpec, conv: ConvBN, in_pos: list[int | None]) -> Stage:
    """The modules of a stage spec: per part a gather (left out when the part reads every position in
    order) and a conv with the folded weights of its rows on its columns' input channels."""
    k = conv.weight.shape[2]
    n_out, n_in = conv.weight.shape[:2]
    # index -1 (a zero filter or a zero column) picks the appended zero row / column
    w_ext = torch.zeros(n_out + 1, n_in + 1, k, k)
    w_ext[:n_out, :n_in] = conv.weight
    b_ext = torch.cat([conv.bias, torch.zeros(1)])
    pos_to_channel = torch.tensor([-1 if c is None else c for c in in_pos] + [-1], dtype=torch.long)
    parts = []
    for rows, cols in spec.parts:
        g = spec.n_groups
        m_out, m_in = len(rows) // g, len(cols) // g
        f_idx = torch.tensor([-1 if f is None else f for f in rows], dtype=torch.long)
        c_pos = torch.tensor([-1 if p is None else p for p in cols], dtype=torch.long).view(g, m_in)
        ch = pos_to_channel[c_pos]  # (g, m_in) input channel ids, -1 for zero columns
        ch_rows = ch.repeat_interleave(m_out, dim=0)  # row i belongs to group i // m_out
        module = nn.Conv2d(m_in * g, len(rows), k, conv.stride, conv.padding, groups=g, bias=True)
        module.weight.data.copy_(w_ext[f_idx[:, None], ch_rows])
        module.bias.data.copy_(b_ext[f_idx])
        index = [0 if p is None else p for p in cols]
        parts.append(Part(module, None if index == list(range(len(in_pos))) else index))
    return Stage(parts)


# ----------------------------------------------------------------------------------------------------
# Blocks and networks
# ----------------------------------------------------------------------------------------------------


def _chain_modules(block: nn.Module) -> list[nn.Conv2d]:
    if isinstance(block, ResNetBasicblock):
        return [block.conv_a, block.conv_b]
    return [getattr(block, f"conv{i}") for i in (1, 2, 3) if hasattr(block, f"conv{i}")]


def _filter_groups(module: nn.Conv2d, filters: list[int]) -> list[list[int]]:
    """`filters` split by their DSP group (argmax of the `group` buffer; one group when there is none)."""
    if not hasattr(module, "group"):
        return [list(filters)]
    assign = module.group.argmax(dim=0).tolist()
    return [[f for f in filters if assign[f] == j] for j in range(module.group.shape[0])]


@torch.no_grad()
def _time_stage(stage: Stage, x: torch.Tensor, calls: int = 3) -> float:
    """Best of `calls` timed calls after one untimed call (seconds)."""
    stage(x)
    best = float("inf")
    for _ in range(calls):
        t0 = time.perf_counter()
        stage(x)
        best = min(best, time.perf_counter() - t0)
    return best


@dataclass
class GroupedOptions:
    packing: str = "auto"  # one of PACKINGS
    choose_by: str = "time"  # auto: "time" (measured on `batch` images) or "macs"
    batch: int = 128
    image_size: int = 32
    candidates: tuple[str, ...] = OPTIONS
    align: int = 1  # round each part's filter count up to a multiple of this (zero filters)


@torch.no_grad()
def pack_block(block: nn.Module, opts: GroupedOptions, x: torch.Tensor | None) -> tuple[GroupedBlock, list[str]]:
    """The packed block and the kind chosen for each of its convs. `x`: a sample block input (for
    timing and for the feature-map sizes)."""
    convs, shortcut = _block_convs(block)
    plan = plan_block(convs, shortcut)
    sc = None if shortcut is None else _conv(shortcut.weight, shortcut.bias, shortcut.stride, shortcut.padding)
    if not plan.out_index:  # the branch writes nothing
        return GroupedBlock([], sc, None, has_body=False), []
    keeps = plan.hidden + [plan.out_index]
    in_pos: list[int | None] = list(range(plan.in_channels))
    stages, kinds = [], []
    h = x
    for conv, module, keep in zip(convs, _chain_modules(block), keeps):
        kept = conv.weight.abs().sum(dim=(2, 3)) > 0
        groups = _filter_groups(module, keep)
        kinds_here = opts.candidates if opts.packing == "auto" else (opts.packing,)
        best = None
        for kind in kinds_here:
            spec = stage_spec(kind, groups, kept, in_pos, opts.align)
            stage = build_stage(spec, conv, in_pos).eval()
            if len(kinds_here) == 1:
                best = (0.0, spec, stage)
                break
            if opts.choose_by == "macs":
                score = spec.macs_per_pixel(conv.weight.shape[2])
            else:
                score = _time_stage(stage, h)
            if best is None or score < best[0]:
                best = (score, spec, stage)
        _, spec, stage = best
        stages.append(stage)
        kinds.append(spec.kind)
        h = torch.relu(stage(h)) if h is not None else None
        in_pos = spec.out_pos
    out_pos = in_pos
    c_out = plan.out_channels
    if out_pos == list(range(c_out)):
        out_index = None
    else:
        where = {c: p for p, c in enumerate(out_pos) if c is not None}
        out_index = [where.get(c, len(out_pos)) for c in range(c_out)]
    return GroupedBlock(stages, sc, out_index, has_body=True), kinds


@torch.no_grad()
def pack_grouped(model: nn.Module, options: GroupedOptions | None = None) -> tuple[PackedNet, list[list[str]]]:
    """The group-aware packed network (eval mode, NCHW) of a masked CifarResNet or torchvision ResNet,
    and the kind chosen per conv of every block."""
    opts = options or GroupedOptions()
    if opts.packing not in PACKINGS:
        raise ValueError(f"packing {opts.packing!r}: expected one of {PACKINGS}")
    model = model.eval()
    stem, head = stem_and_head(model)
    h = None  # a sample block input, only for timing
    if opts.packing == "auto" and opts.choose_by == "time":
        gen = torch.Generator().manual_seed(0)
        h = stem(torch.randn(opts.batch, 3, opts.image_size, opts.image_size, generator=gen))
    blocks, chosen = [], []
    for block in _residual_blocks(model):
        packed, kinds = pack_block(block, opts, h)
        blocks.append(packed.eval())
        chosen.append(kinds)
        h = block(h) if h is not None else None
    return PackedNet(stem, blocks, head, channels_last=False).eval(), chosen
