"""The authors' packed form (`pack_model --packing branches`): one branch per group of every pruned conv.

Per residual block of a masked CIFAR ResNet (research notes 1.7, and `released.py`, which reads the
authors' files of this form):

    conv_a: for each group g of conv_a's filters: gather the input channels U_g its kept kernels
            read, a small conv with the group's filters (BN folded), ReLU; concatenate the branches
    conv_b: for each group h of conv_b's filters: gather the concatenated conv_a outputs its kept
            kernels read, a small conv (BN folded), index_add into the shortcut at the group's
            output channels; ReLU

It executes exactly DSP's kernel count (the group-channel sparsity inside a conv is kept), so its
MACs are the paper's; the many small convs and gathers make it slower than `dsp_torch.pack` (ours),
which runs one conv per layer over the union of the groups' channels. Dead filters (no kept kernel,
zero folded bias) are dropped; a filter whose output is a constant is kept (it reads channel 0
through zero weights).
"""

from __future__ import annotations

import torch
from torch import nn

from dsp_torch.models.cifar_resnet import CifarResNet
from dsp_torch.pack import PackedNet, _block_convs, _conv, _packed_conv, _residual_blocks, fold_bn


class Branch(nn.Module):
    """conv(x[:, in_index]), its outputs meant for channels out_index."""

    def __init__(self, conv: nn.Conv2d, in_index: list[int], out_index: list[int]):
        super().__init__()
        self.conv = conv
        self.register_buffer("in_index", torch.tensor(in_index, dtype=torch.long))
        self.register_buffer("out_index", torch.tensor(out_index, dtype=torch.long))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x.index_select(1, self.in_index))


class BranchBlock(nn.Module):
    def __init__(self, first: list[Branch], second: list[Branch], shortcut: nn.Module | None):
        super().__init__()
        self.first = nn.ModuleList(first)
        self.second = nn.ModuleList(second)
        self.shortcut = shortcut if shortcut is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.shortcut(x)
        if len(self.second) == 0:
            return torch.relu(out)
        hidden = torch.cat([torch.relu(b(x)) for b in self.first], dim=1)
        for b in self.second:
            out = out.index_add(1, b.out_index, b(hidden))
        return torch.relu(out)


def _groups(conv: nn.Conv2d) -> torch.Tensor:
    """Each filter's group (argmax of the `group` buffer, as pruning assigned them)."""
    return conv.group.argmax(dim=0)


def _branches(folded, groups: torch.Tensor, alive_in: list[int]) -> tuple[list[Branch], list[int]]:
    """Branches of one conv over inputs `alive_in` (positions 0.. of the branch input); returns them and
    the filters they compute, in concatenation order."""
    kept = folded.weight.abs().sum(dim=(2, 3)) > 0  # (out, in)
    alive = kept[:, alive_in].any(dim=1) | (folded.bias != 0)
    branches, order = [], []
    for g in groups.unique().tolist():
        filters = [n for n in torch.nonzero((groups == g) & alive).flatten().tolist()]
        if not filters:
            continue
        reads = [j for j, c in enumerate(alive_in) if kept[filters, c].any()]
        cols = [alive_in[j] for j in reads] or [None]  # a constant branch reads channel 0 through zeros
        conv = _packed_conv(folded, filters, cols)
        branches.append(Branch(conv, reads or [0], filters))
        order += filters
    return branches, order


@torch.no_grad()
def pack_branches(model: nn.Module) -> PackedNet:
    """The authors' multi-branch packed network (eval mode) of a masked CifarResNet."""
    if not isinstance(model, CifarResNet):
        raise TypeError("--packing branches supports the CIFAR ResNets")
    model = model.eval()
    first = fold_bn(model.conv_1_3x3, model.bn_1)
    stem = nn.Sequential(_conv(first.weight, first.bias, first.stride, first.padding), nn.ReLU(inplace=True))
    blocks = []
    for block in _residual_blocks(model):
        (conv_a, conv_b), shortcut = _block_convs(block)
        a_branches, a_order = _branches(conv_a, _groups(block.conv_a), list(range(conv_a.weight.shape[1])))
        if not a_branches:  # conv_a is dead: one zero channel stands for its outputs
            a_branches, a_order = [Branch(_packed_conv(conv_a, [None], [None]), [0], [0])], [0]
        # conv_b reads the concatenated conv_a outputs: input position p holds conv_a filter a_order[p]
        b_branches, _ = _branches(conv_b, _groups(block.conv_b), a_order)
        sc = None if shortcut is None else _conv(shortcut.weight, shortcut.bias, shortcut.stride, shortcut.padding)
        blocks.append(BranchBlock(a_branches, b_branches, sc))
    head = nn.Linear(model.classifier.in_features, model.classifier.out_features)
    head.load_state_dict(model.classifier.state_dict())
    return PackedNet(stem, blocks, head, channels_last=False).eval()
