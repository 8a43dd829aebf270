"""Physical slimming: a masked model -> plain layers, with the removable channels really removed.

`bake(model)` turns every masked conv / linear into a plain nn.Conv2d / nn.Linear holding
weight * mask (same outputs, no scores, no global top-k per call).

`slim(model, image_size)` then removes, inside every residual basic block (conv1 -> bn1 -> ReLU ->
conv2), each intermediate channel j that is dead:
- its conv1 filter is all zero (filter masks; any mask that empties a filter): the channel is then the
  constant c_j = ReLU(bn1(0)) = ReLU(beta_j - gamma_j mu_j / sqrt(var_j + eps)) in eval mode, and its
  contribution to conv2 (position dependent near the border, because of the zero padding) is folded
  into a fixed bias map added after the slimmed conv2;
- or its conv2 input column is all zero (channel masks): conv2 ignores it, so conv1's filter and bn1's
  channel go too.
The residual stream itself (conv2 / shortcut outputs, the blocks' inputs) keeps its width: removing a
channel there would need every producer of the sum to drop it; zero weights stay there as zeros.
The slimmed model equals the masked one in eval mode (tested), at the input size it was slimmed for
(the bias maps have that spatial size). We checked Torch-Pruning (PyPI `torch-pruning`): its dependency
graph removes channels but drops the BN constant of a zeroed filter and prunes residual groups
jointly, so its outputs would not equal the masked model's; this small pass is exact for BiP's
ResNets (resnet20s-56s, CIFAR resnet18/34, torchvision-style ResNet18/34).
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn import functional as F

from bip_torch import layers as L


@torch.no_grad()
def bake(model: nn.Module) -> nn.Module:
    """A copy with the current masks multiplied into plain conv / linear layers."""
    masks = L.hard_masks(model)
    out = copy.deepcopy(model)
    out._forward_pre_hooks.clear()
    for name, m in list(out.named_modules()):
        if name not in masks:
            continue
        if isinstance(m, nn.Conv2d):
            new = nn.Conv2d(
                m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, m.dilation, m.groups,
                bias=m.bias is not None,
            )  # fmt: skip
        else:
            new = nn.Linear(m.in_features, m.out_features, bias=m.bias is not None)
        new.weight.copy_(m.weight * masks[name].to(m.weight.device))
        if m.bias is not None:
            new.bias.copy_(m.bias)
        new.to(m.weight.device)
        parent, _, attr = name.rpartition(".")
        setattr(out.get_submodule(parent) if parent else out, attr, new)
    return out


class ConvPlusMap(nn.Module):
    """conv(x) + a fixed map: the slimmed conv2 plus what the removed constant channels contributed."""

    def __init__(self, conv: nn.Conv2d, bias_map: torch.Tensor | None):
        super().__init__()
        self.conv = conv
        if bias_map is not None:
            self.register_buffer("bias_map", bias_map)
        else:
            self.bias_map = None

    def forward(self, x):
        y = self.conv(x)
        return y if self.bias_map is None else y + self.bias_map


def _is_basic_block(m: nn.Module) -> bool:
    return (
        all(hasattr(m, a) for a in ("conv1", "bn1", "conv2", "bn2"))
        and not hasattr(m, "conv3")
        and isinstance(m.conv1, nn.Conv2d)
        and isinstance(m.bn1, nn.BatchNorm2d)
        and type(m).__name__ == "BasicBlock"
    )


@torch.no_grad()
def _slim_block(block: nn.Module, hw: tuple[int, int]) -> tuple[int, int]:
    c1, bn, c2 = block.conv1, block.bn1, block.conv2
    w1, w2 = c1.weight, c2.weight
    zero_filter = w1.flatten(1).abs().sum(1) == 0
    if c1.bias is not None:
        zero_filter &= c1.bias == 0
    unused = w2.abs().sum(dim=(0, 2, 3)) == 0
    dead = zero_filter | unused
    keep = (~dead).nonzero().flatten()
    if keep.numel() == 0:  # keep one channel so that the layers stay well formed (it is computed, exactly)
        keep = torch.tensor([0], device=w1.device)
        dead[0] = False
    if not dead.any():
        return c1.out_channels, c1.out_channels
    # constant value of each removed channel after bn1 + ReLU (0 where conv2 ignores the channel)
    const = F.relu(bn.bias - bn.weight * bn.running_mean / torch.sqrt(bn.running_var + bn.eps))
    const = torch.where(zero_filter & ~unused, const, torch.zeros_like(const)) * dead
    bias_map = None
    if const.abs().sum() > 0:
        img = const.view(1, -1, 1, 1).expand(1, -1, *hw).to(w2.dtype)
        bias_map = F.conv2d(img, w2, None, c2.stride, c2.padding, c2.dilation, c2.groups)
    n = keep.numel()
    new1 = nn.Conv2d(c1.in_channels, n, c1.kernel_size, c1.stride, c1.padding, c1.dilation, bias=c1.bias is not None)
    new1.weight.copy_(w1[keep])
    if c1.bias is not None:
        new1.bias.copy_(c1.bias[keep])
    newbn = nn.BatchNorm2d(n, eps=bn.eps, momentum=bn.momentum)
    for attr in ("weight", "bias", "running_mean", "running_var"):
        getattr(newbn, attr).copy_(getattr(bn, attr)[keep])
    newbn.num_batches_tracked.copy_(bn.num_batches_tracked)
    new2 = nn.Conv2d(n, c2.out_channels, c2.kernel_size, c2.stride, c2.padding, c2.dilation, bias=c2.bias is not None)
    new2.weight.copy_(w2[:, keep])
    if c2.bias is not None:
        new2.bias.copy_(c2.bias)
    dev = w1.device
    block.conv1, block.bn1 = new1.to(dev), newbn.to(dev)
    block.conv2 = ConvPlusMap(new2.to(dev), bias_map)
    return c1.out_channels, n


@torch.no_grad()
def slim(model: nn.Module, image_size: int = 32) -> nn.Module:
    """Baked and slimmed copy of a masked model (eval mode); prints nothing, returns the new model."""
    dense = bake(model).eval()
    blocks = [(n, m) for n, m in dense.named_modules() if _is_basic_block(m)]
    sizes: dict[str, tuple[int, int]] = {}
    hooks = [
        m.conv1.register_forward_hook(lambda mod, i, o, n=n: sizes.__setitem__(n, tuple(o.shape[2:])))
        for n, m in blocks
    ]
    dev = next(dense.parameters()).device
    dense(torch.zeros(1, 3, image_size, image_size, device=dev))
    for h in hooks:
        h.remove()
    dense.slim_report = {n: _slim_block(m, sizes[n]) for n, m in blocks}
    return dense.eval()


@torch.no_grad()
def executed_macs(model: nn.Module, image_size: int = 32) -> int:
    """Multiply-accumulates the layers of a (plain) model execute for one image: every conv and linear
    counted densely at its real shape (what a slimmed model costs)."""
    total = 0

    def hook(mod, inputs, out):
        nonlocal total
        if isinstance(mod, nn.Conv2d):
            total += mod.weight.numel() * out.shape[2] * out.shape[3]
        else:
            total += mod.weight.numel()

    hs = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    was = model.training
    model.eval()
    model(torch.zeros(1, 3, image_size, image_size, device=next(model.parameters()).device))
    model.train(was)
    for h in hs:
        h.remove()
    return total


@torch.no_grad()
def effective_macs(model: nn.Module, image_size: int = 32) -> int:
    """MACs counting only the kept (non-zero after masking) weights of each conv / linear."""
    baked = bake(model) if L.masked_modules(model) else model
    total = 0

    def hook(mod, inputs, out):
        nonlocal total
        nnz = int((mod.weight != 0).sum())
        total += nnz * (out.shape[2] * out.shape[3] if isinstance(mod, nn.Conv2d) else 1)

    hs = [m.register_forward_hook(hook) for m in baked.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    was = baked.training
    baked.eval()
    baked(torch.zeros(1, 3, image_size, image_size, device=next(baked.parameters()).device))
    baked.train(was)
    for h in hs:
        h.remove()
    return total
