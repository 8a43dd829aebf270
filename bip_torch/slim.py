"""Physical slimming: a masked model -> plain layers, with the removable channels really removed.

`bake(model)` turns every masked conv / linear into a plain nn.Conv2d / nn.Linear holding
weight * mask (same outputs, no scores, no global top-k per call).

`slim(model, image_size)` then removes the dead channels of every PAIR producer conv -> BN -> ReLU
(-> max / average pools) -> consumer, where the channels between the two are private to the pair:

- basic blocks (resnet20s-56s, CIFAR resnet18/34, ResNet18/34): conv1 -> bn1 -> conv2;
- bottlenecks (CIFAR resnet50, ResNet50): conv2 -> bn2 -> conv3, then conv1 -> bn1 -> conv2;
- WideResNet blocks (pre-activation): conv1 -> bn2 -> conv2;
- vgg16_bn: every conv -> its BN -> the next conv, and the last conv -> classifier[0] (the 2 x 2
  average pool makes 4 features of each channel).

A channel j is dead when
- its producer filter is all zero (filter masks; any mask that empties a filter): the channel is then
  the constant c_j = ReLU(bn(0)) = ReLU(beta_j - gamma_j mu_j / sqrt(var_j + eps)) in eval mode (pools
  keep a constant constant), and its contribution to the consumer is folded in exactly: into the
  consumer's bias when it sees no padding (1x1 convs, the FC), else into a fixed bias map added after
  the consumer (position dependent near the border, because of the zero padding);
- or the consumer ignores it (all-zero input column: channel masks): the producer filter and the BN
  channel go too.
Pairs are slimmed from the last to the first, so that every producer is still a plain conv whose
zeroed filters output exactly zero. The residual stream (block outputs, shortcuts, the stem) keeps its
width: removing a channel there would need every producer of the sum to drop it; zero weights stay
there as zeros. The slimmed model equals the masked one in eval mode (tested), at the input size it was
slimmed for (the bias maps have that spatial size). We checked Torch-Pruning (PyPI `torch-pruning`):
its dependency graph removes channels but drops the BN constant of a zeroed filter and prunes residual
groups jointly, so its outputs would not equal the masked model's.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

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
    """conv(x) + a fixed map: the slimmed consumer conv plus what the removed constant channels contributed."""

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


@dataclass
class Pair:
    """producer conv -> bn -> ReLU (-> pools) -> consumer (conv, or linear reading `group` features per channel)."""

    producer: str
    bn: str
    consumer: str
    group: int = 1


def pairs(model: nn.Module) -> list[Pair]:
    """The slimmable pairs of a (baked) model of BiP's architectures, in forward order."""
    from bip_torch.models import resnet, resnet_cifar, resnets, vgg_cifar, wideresnet

    out = []
    for name, m in model.named_modules():
        pre = f"{name}." if name else ""
        if isinstance(m, (resnets.BasicBlock, resnet_cifar.BasicBlock, resnet.BasicBlock)):
            out.append(Pair(pre + "conv1", pre + "bn1", pre + "conv2"))
        elif isinstance(m, (resnet_cifar.Bottleneck, resnet.Bottleneck)):
            out += [Pair(pre + "conv1", pre + "bn1", pre + "conv2"), Pair(pre + "conv2", pre + "bn2", pre + "conv3")]
        elif isinstance(m, wideresnet.WideBlock):
            out.append(Pair(pre + "conv1", pre + "bn2", pre + "conv2"))
        elif isinstance(m, vgg_cifar.VGG):
            convs = [i for i, layer in enumerate(m.features) if isinstance(layer, nn.Conv2d)]
            for a, b in zip(convs, convs[1:]):
                out.append(Pair(f"{pre}features.{a}", f"{pre}features.{a + 1}", f"{pre}features.{b}"))
            pool = m.avgpool.output_size
            group = pool * pool if isinstance(pool, int) else pool[0] * pool[1]
            last = convs[-1]
            out.append(Pair(f"{pre}features.{last}", f"{pre}features.{last + 1}", f"{pre}classifier.0", group))
    return out


def _set(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, attr, module)


@torch.no_grad()
def _slim_pair(model: nn.Module, pair: Pair, hw: tuple[int, int]) -> tuple[int, int]:
    """Remove the dead channels between pair.producer and pair.consumer; (old, new) channel count."""
    c1, bn, c2 = (model.get_submodule(n) for n in (pair.producer, pair.bn, pair.consumer))
    w1 = c1.weight
    w2 = c2.weight if isinstance(c2, nn.Conv2d) else c2.weight.view(c2.out_features, c1.out_channels, pair.group)
    zero_filter = w1.flatten(1).abs().sum(1) == 0
    if c1.bias is not None:
        zero_filter &= c1.bias == 0
    unused = w2.abs().sum(dim=(0, *range(2, w2.dim()))) == 0
    dead = zero_filter | unused
    keep = (~dead).nonzero().flatten()
    if keep.numel() == 0:  # keep one channel so that the layers stay well formed (it is computed, exactly)
        keep = torch.tensor([0], device=w1.device)
        dead[0] = False
    if not dead.any():
        return c1.out_channels, c1.out_channels
    # constant value of each removed channel after bn + ReLU (0 where the consumer ignores the channel)
    const = F.relu(bn.bias - bn.weight * bn.running_mean / torch.sqrt(bn.running_var + bn.eps))
    const = torch.where(zero_filter & ~unused & dead, const, torch.zeros_like(const))
    n, dev = keep.numel(), w1.device
    new1 = nn.Conv2d(c1.in_channels, n, c1.kernel_size, c1.stride, c1.padding, c1.dilation, bias=c1.bias is not None)
    new1.weight.copy_(w1[keep])
    if c1.bias is not None:
        new1.bias.copy_(c1.bias[keep])
    newbn = nn.BatchNorm2d(n, eps=bn.eps, momentum=bn.momentum)
    for attr in ("weight", "bias", "running_mean", "running_var"):
        getattr(newbn, attr).copy_(getattr(bn, attr)[keep])
    newbn.num_batches_tracked.copy_(bn.num_batches_tracked)
    folded = const.abs().sum() > 0
    if isinstance(c2, nn.Linear):  # input feature c * group + s of channel c
        new2 = nn.Linear(n * pair.group, c2.out_features, bias=True)
        new2.weight.copy_(w2[:, keep].reshape(c2.out_features, -1))
        base = c2.bias if c2.bias is not None else torch.zeros(c2.out_features, device=dev)
        new2.bias.copy_(base + (w2 * const.view(1, -1, 1)).sum(dim=(1, 2)))
    else:
        no_padding = all(p == 0 for p in c2.padding) if isinstance(c2.padding, tuple) else c2.padding == 0
        needs_bias = c2.bias is not None or (folded and no_padding)
        new2 = nn.Conv2d(n, c2.out_channels, c2.kernel_size, c2.stride, c2.padding, c2.dilation, bias=needs_bias)
        new2.weight.copy_(w2[:, keep])
        bias_map = None
        if folded:
            img = const.view(1, -1, 1, 1).expand(1, -1, *hw).to(w2.dtype)
            bias_map = F.conv2d(img, w2, None, c2.stride, c2.padding, c2.dilation, c2.groups)
        if needs_bias:
            new2.bias.copy_(c2.bias if c2.bias is not None else torch.zeros(c2.out_channels, device=dev))
        if bias_map is not None and no_padding:  # every output position sees the same constants: a bias
            new2.bias.add_(bias_map[0, :, 0, 0])
            bias_map = None
        new2 = ConvPlusMap(new2.to(dev), bias_map) if bias_map is not None else new2
    _set(model, pair.producer, new1.to(dev))
    _set(model, pair.bn, newbn.to(dev))
    _set(model, pair.consumer, new2.to(dev))
    return c1.out_channels, n


@torch.no_grad()
def slim(model: nn.Module, image_size: int = 32) -> nn.Module:
    """Baked and slimmed copy of a masked model (eval mode); `slim_report` maps each producer conv to its
    (old, new) output channels."""
    dense = bake(model).eval()
    found = pairs(dense)
    sizes: dict[str, tuple[int, int]] = {}
    hooks = [
        dense.get_submodule(p.consumer).register_forward_pre_hook(
            lambda mod, inp, n=p.consumer: sizes.__setitem__(n, tuple(inp[0].shape[2:]))
        )
        for p in found
    ]
    dev = next(dense.parameters()).device
    dense(torch.zeros(1, 3, image_size, image_size, device=dev))
    for h in hooks:
        h.remove()
    report = {}
    for p in reversed(found):  # last first: each producer is then still a plain conv (see the docstring)
        report[p.producer] = _slim_pair(dense, p, sizes[p.consumer])
    dense.slim_report = dict(reversed(report.items()))
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
