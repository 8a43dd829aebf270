"""`resnet20s/32s/44s/56s`: He et al.'s CIFAR ResNets with option-A shortcuts (the paper's ResNet-20/56).

Widths 16-32-64, three stages of n = (depth-2)/6 basic blocks; where the width doubles the shortcut
subsamples by 2 and zero-pads the new channels (no parameters). Kaiming-normal init of convs and the FC.
Module names follow BiP's models/resnets.py (conv1, bn1, layer1-3, conv1/bn1/conv2/bn2 per block, fc),
so its checkpoints' keys match.
"""

from __future__ import annotations

from torch import nn
from torch.nn import functional as F

from bip_torch.layers import layer_factories


class PadShortcut(nn.Module):
    """Option A: x[:, :, ::2, ::2] with planes//4 zero channels on each side."""

    def __init__(self, pad: int):
        super().__init__()
        self.pad = pad

    def forward(self, x):
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, conv, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = conv(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = PadShortcut(planes // 4) if (stride != 1 or in_planes != planes) else nn.Identity()

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNetS(nn.Module):
    def __init__(self, depth: int, layer_type: str = "dense", num_classes: int = 10):
        super().__init__()
        conv, linear = layer_factories(layer_type)
        n = (depth - 2) // 6
        self.in_planes = 16
        self.conv1 = conv(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = self._stage(conv, 16, n, 1)
        self.layer2 = self._stage(conv, 32, n, 2)
        self.layer3 = self._stage(conv, 64, n, 2)
        self.fc = linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)

    def _stage(self, conv, planes, n, stride):
        blocks = []
        for s in [stride] + [1] * (n - 1):
            blocks.append(BasicBlock(conv, self.in_planes, planes, s))
            self.in_planes = planes
        return nn.Sequential(*blocks)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.fc(out)


def resnet20s(layer_type="dense", num_classes=10):
    return ResNetS(20, layer_type, num_classes)


def resnet32s(layer_type="dense", num_classes=10):
    return ResNetS(32, layer_type, num_classes)


def resnet44s(layer_type="dense", num_classes=10):
    return ResNetS(44, layer_type, num_classes)


def resnet56s(layer_type="dense", num_classes=10):
    return ResNetS(56, layer_type, num_classes)
