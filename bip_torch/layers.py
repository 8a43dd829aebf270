"""Masked layers of HYDRA / BiP: popup scores per weight, a straight-through top-k, three layer types.

Every masked conv / linear holds a Parameter `popup_scores` of the weight's shape (HYDRA, Sehwag et al.
2020; the BiP names are kept so that checkpoints load in the original code). The effective weight is
`weight * mask(|popup_scores|)`; the mask is binary in the forward pass and the straight-through
estimator passes the incoming gradient to every score entry (pruned ones too), so that
d loss / d s = sign(s) * weight * d loss / d w (research notes 1.1).

Layer types (`--layer-type`, BiP models/layers.py):

- `unstructured`: ONE global top-k over the concatenated |scores| of every masked module (every conv,
  stem and 1x1 shortcuts included, and the FC); the model's forward builds it once per call.
- `filter`: per conv layer, the L2 norm of |scores| over each output filter; the int((1-k) out)
  smallest filters are zeroed. The FC stays dense (nn.Linear).
- `channel`: per conv layer, L2 over (kh, kw), then L2 over the output filters: one norm per input
  channel (the RGB inputs of the stem included); the int((1-k) in) smallest input channels are zeroed.
  The FC stays dense.

In every type the kept count is N - floor((1-k) N) of the ranked units (weights, filters, channels).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from shared.errors import UserError

LAYER_TYPES = ("dense", "unstructured", "filter", "channel")


class StraightThrough(torch.autograd.Function):
    """Forward: the given binary mask. Backward: the incoming gradient, unchanged, to the scores."""

    @staticmethod
    def forward(ctx, scores_abs: torch.Tensor, hard: torch.Tensor) -> torch.Tensor:
        return hard

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad, None


def n_pruned(k: float, n: int) -> int:
    """How many of n ranked units the top-k zeroes: int((1-k) n), as the original computes it."""
    return int((1 - k) * n)


def topk_mask(values: torch.Tensor, k: float) -> torch.Tensor:
    """1 for the n - int((1-k) n) largest entries of a flat tensor, 0 for the others (stable on ties)."""
    n = values.numel()
    j = n_pruned(k, n)
    mask = torch.ones_like(values)
    if j:
        order = torch.sort(values, stable=True).indices
        mask[order[:j]] = 0
    return mask


def filter_mask(scores_abs: torch.Tensor, k: float) -> torch.Tensor:
    """Filter-wise mask of one conv: rank output filters by the L2 norm of their |scores|."""
    norms = scores_abs.flatten(1).norm(p=2, dim=1)  # (out,)
    keep = topk_mask(norms, k)
    return keep.view(-1, *([1] * (scores_abs.dim() - 1))).expand_as(scores_abs).contiguous()


def channel_mask(scores_abs: torch.Tensor, k: float) -> torch.Tensor:
    """Channel-wise mask of one conv: L2 over (kh, kw), then over the filters -> one norm per input channel."""
    per_kernel = scores_abs.flatten(2).norm(p=2, dim=2)  # (out, in)
    norms = per_kernel.norm(p=2, dim=0)  # (in,)
    keep = topk_mask(norms, k)
    return keep.view(1, -1, *([1] * (scores_abs.dim() - 2))).expand_as(scores_abs).contiguous()


class _Masked:
    """Mixin for SubnetConv / SubnetLinear: scores, the layer type and k, and the effective weight."""

    layer_type: str
    k: float
    _global_mask: torch.Tensor | None

    def _init_masked(self, layer_type: str):
        if layer_type not in LAYER_TYPES[1:]:
            raise UserError(f"masked layer type must be one of {LAYER_TYPES[1:]}, got {layer_type!r}")
        self.layer_type, self.k = layer_type, 1.0
        self.popup_scores = nn.Parameter(torch.empty_like(self.weight))
        nn.init.kaiming_uniform_(self.popup_scores, a=5**0.5)  # HYDRA's score init
        self._global_mask = None  # set by the model's pre-hook (unstructured)
        self._record = None  # a list: each forward appends its effective weight (grad retained)

    @torch.no_grad()
    def hard_mask(self) -> torch.Tensor:
        """This layer's own binary mask (filter / channel); unstructured masks are global (see below)."""
        s = self.popup_scores.abs()
        if self.layer_type == "filter":
            return filter_mask(s, self.k)
        if self.layer_type == "channel":
            return channel_mask(s, self.k)
        return topk_mask(s.flatten(), self.k).view_as(s)  # a lone unstructured layer: layer-wise top-k

    def masked_weight(self) -> torch.Tensor:
        hard = self.current_mask()
        w = self.weight * StraightThrough.apply(self.popup_scores.abs(), hard)
        if self._record is not None and w.requires_grad:
            w.retain_grad()
            self._record.append(w)
        return w

    def current_mask(self) -> torch.Tensor:
        return self._global_mask if self._global_mask is not None else self.hard_mask()


class SubnetConv(_Masked, nn.Conv2d):
    def __init__(self, *args, layer_type: str = "unstructured", **kwargs):
        nn.Conv2d.__init__(self, *args, **kwargs)
        self._init_masked(layer_type)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.masked_weight(), self.bias, self.stride, self.padding, self.dilation, self.groups)


class SubnetLinear(_Masked, nn.Linear):
    def __init__(self, *args, layer_type: str = "unstructured", **kwargs):
        nn.Linear.__init__(self, *args, **kwargs)
        self._init_masked(layer_type)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.masked_weight(), self.bias)


def layer_factories(layer_type: str):
    """(conv, linear) constructors for a layer type, as BiP's get_layers(): the FC is masked only in
    unstructured mode."""
    if layer_type not in LAYER_TYPES:
        raise UserError(f"--layer-type must be one of {', '.join(LAYER_TYPES)}, got {layer_type!r}")
    if layer_type == "dense":
        return nn.Conv2d, nn.Linear

    def conv(*a, **kw):
        return SubnetConv(*a, layer_type=layer_type, **kw)

    def linear(*a, **kw):
        return SubnetLinear(*a, layer_type=layer_type, **kw) if layer_type == "unstructured" else nn.Linear(*a, **kw)

    return conv, linear


def masked_modules(model: nn.Module) -> list[tuple[str, _Masked]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, _Masked)]


def set_prune_rate(model: nn.Module, k: float) -> None:
    for _, m in masked_modules(model):
        m.k = float(k)


@torch.no_grad()
def global_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """One top-k over the concatenated |scores| of every unstructured masked module (BiP's global rule)."""
    mods = [(n, m) for n, m in masked_modules(model) if m.layer_type == "unstructured"]
    if not mods:
        return {}
    k = mods[0][1].k
    flat = torch.cat([m.popup_scores.detach().abs().flatten() for _, m in mods])
    keep = topk_mask(flat, k)
    out, at = {}, 0
    for n, m in mods:
        size = m.popup_scores.numel()
        out[n] = keep[at : at + size].view_as(m.popup_scores)
        at += size
    return out


def uses_global_mask(model: nn.Module) -> bool:
    """Whether the model's forward builds one global unstructured mask (else each layer ranks its own
    scores: --hydra-original, which removes the hook)."""
    return any(h is _global_pre_hook for h in model._forward_pre_hooks.values())


def hard_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """The binary mask of every masked module, as the forward pass uses it."""
    glob = global_masks(model) if uses_global_mask(model) else {}
    return {n: glob[n] if n in glob else m.hard_mask() for n, m in masked_modules(model)}


def _global_pre_hook(model: nn.Module, _inputs) -> None:
    masks = global_masks(model)
    for name, m in masked_modules(model):
        m._global_mask = masks.get(name)


def install_global_mask(model: nn.Module) -> nn.Module:
    """Make the model build its unstructured masks once per forward, globally (no-op for other types)."""
    if any(m.layer_type == "unstructured" for _, m in masked_modules(model)):
        model.register_forward_pre_hook(_global_pre_hook)
    return model


# ----------------------------------------------------------------------------------------------------
# Which tensors train in which mode (BiP utils/model.py: switch_to_prune / finetune / bilevel)
# ----------------------------------------------------------------------------------------------------


def _set_trainable(model: nn.Module, *, scores: bool, weights: bool) -> None:
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            m.weight.requires_grad_(weights)
            if m.bias is not None:
                m.bias.requires_grad_(weights)
        if isinstance(m, _Masked):
            m.popup_scores.requires_grad_(scores)
        # BatchNorm affine parameters stay trainable in every mode (--freeze-bn aside)


def switch_to_prune(model: nn.Module) -> None:
    """Scores train; conv/linear weights and biases frozen; BN trainable."""
    _set_trainable(model, scores=True, weights=False)


def switch_to_finetune(model: nn.Module) -> None:
    """Weights and biases train; scores frozen (fixed mask); BN trainable."""
    _set_trainable(model, scores=False, weights=True)


def switch_to_bilevel(model: nn.Module) -> None:
    _set_trainable(model, scores=True, weights=True)


def freeze_bn(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            for p in m.parameters():
                p.requires_grad_(False)


# ----------------------------------------------------------------------------------------------------
# Score initialisations
# ----------------------------------------------------------------------------------------------------


@torch.no_grad()
def alias_scores_to_weights(model: nn.Module) -> None:
    """BiP's --scaled-score-init: `popup_scores.data = weight.data`, so both Parameters share storage
    (research notes 1.3 b): the mask is the top-k of |weights| and both levels write into one tensor."""
    for _, m in masked_modules(model):
        m.popup_scores.data = m.weight.data


@torch.no_grad()
def copy_scores_from_weights(model: nn.Module) -> None:
    """Scores = |weights| as a separate tensor (the paper's form and OMP: no aliasing)."""
    for _, m in masked_modules(model):
        m.popup_scores.data = m.weight.data.abs().clone()


@torch.no_grad()
def hydra_scaled_score_init(model: nn.Module) -> None:
    """HYDRA's initialize_scaled_score: s = sqrt(6 / fan_in) * w / max|w|, a new tensor per layer."""
    for _, m in masked_modules(model):
        fan_in = m.weight[0].numel()
        m.popup_scores.data = (6 / fan_in) ** 0.5 * m.weight.data / m.weight.data.abs().max()


@torch.no_grad()
def scale_rand_init(model: nn.Module, k: float) -> None:
    """What the original does in prune mode WITHOUT --scaled-score-init: every conv/linear weight of the
    pretrained net is multiplied by 1/sqrt(k)."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            m.weight.data = m.weight.data / k**0.5


@torch.no_grad()
def sparsity_report(model: nn.Module) -> dict:
    """Kept / total of the conv and FC weights, per layer and global (BN and biases excluded).

    Dense conv/linear layers (e.g. the FC in structured modes) count as fully kept."""
    masks = hard_masks(model)
    layers, kept, total = {}, 0, 0
    for name, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            n = m.weight.numel()
            kk = int(masks[name].sum()) if name in masks else n
            layers[name] = {"kept": kk, "total": n, "sparsity": 1 - kk / n}
            kept, total = kept + kk, total + n
    return {"kept": kept, "total": total, "sparsity": 1 - kept / max(total, 1), "layers": layers}
