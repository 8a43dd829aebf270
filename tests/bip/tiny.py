"""A tiny masked network for hand-checked updates: conv(1->2, 3x3) -> BN -> ReLU -> FC(32 -> 3)."""

import torch
from torch import nn
from torch.nn import functional as F

from bip_torch.layers import SubnetConv, SubnetLinear, install_global_mask, set_prune_rate


class Tiny(nn.Module):
    def __init__(self, layer_type="unstructured", k=0.5):
        super().__init__()
        self.conv = SubnetConv(1, 2, 3, padding=1, bias=False, layer_type=layer_type)
        self.bn = nn.BatchNorm2d(2)
        self.fc = SubnetLinear(32, 3, layer_type=layer_type)
        set_prune_rate(self, k)
        install_global_mask(self)

    def forward(self, x):
        return self.fc(F.relu(self.bn(self.conv(x))).flatten(1))


def tiny(seed=0, k=0.5):
    torch.manual_seed(seed)
    m = Tiny(k=k)
    with torch.no_grad():
        m.bn.weight.uniform_(0.5, 1.5)
        m.bn.bias.uniform_(-0.2, 0.2)
    return m


def batches(seed=1, n=6):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 4, 4, generator=g)
    y = torch.randint(0, 3, (n,), generator=g)
    return x, y
