"""`wrn_28_4`, `wrn_28_10`: the TRADES-style pre-activation WideResNet of HYDRA / BiP.

The original defines an extra block `sub_block1` that forward never uses but whose weights enter the
global top-k (wasting budget); it is left out here (a named deviation, README). Names otherwise as the
original (conv1, block1-3.layer.i.{bn1,conv1,bn2,conv2,convShortcut}, bn1, fc).
"""

from __future__ import annotations

import math

from torch import nn
from torch.nn import functional as F

from bip_torch.layers import layer_factories


class WideBlock(nn.Module):
    def __init__(self, conv, in_planes, out_planes, stride):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = conv(in_planes, out_planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.conv2 = conv(out_planes, out_planes, 3, 1, 1, bias=False)
        self.equal = in_planes == out_planes
        self.convShortcut = None if self.equal else conv(in_planes, out_planes, 1, stride, 0, bias=False)  # noqa: N815

    def forward(self, x):
        o = F.relu(self.bn1(x))
        out = self.conv2(F.relu(self.bn2(self.conv1(o))))
        return out + (x if self.equal else self.convShortcut(o))


class NetworkBlock(nn.Module):
    def __init__(self, conv, n, in_planes, out_planes, stride):
        super().__init__()
        self.layer = nn.Sequential(
            *[
                WideBlock(conv, in_planes if i == 0 else out_planes, out_planes, stride if i == 0 else 1)
                for i in range(n)
            ]
        )

    def forward(self, x):
        return self.layer(x)


class WideResNet(nn.Module):
    def __init__(self, depth, widen, layer_type="dense", num_classes=10):
        super().__init__()
        conv, linear = layer_factories(layer_type)
        ch = [16, 16 * widen, 32 * widen, 64 * widen]
        n = (depth - 4) // 6
        self.conv1 = conv(3, ch[0], 3, 1, 1, bias=False)
        self.block1 = NetworkBlock(conv, n, ch[0], ch[1], 1)
        self.block2 = NetworkBlock(conv, n, ch[1], ch[2], 2)
        self.block3 = NetworkBlock(conv, n, ch[2], ch[3], 2)
        self.bn1 = nn.BatchNorm2d(ch[3])
        self.fc = linear(ch[3], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                kh, kw = m.kernel_size
                m.weight.data.normal_(0, math.sqrt(2.0 / (kh * kw * m.out_channels)))
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)

    def forward(self, x):
        out = self.block3(self.block2(self.block1(self.conv1(x))))
        out = F.relu(self.bn1(out))
        return self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))


def wrn_28_4(layer_type="dense", num_classes=10):
    return WideResNet(28, 4, layer_type, num_classes)


def wrn_28_10(layer_type="dense", num_classes=10):
    return WideResNet(28, 10, layer_type, num_classes)
