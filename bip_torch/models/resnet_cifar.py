"""`resnet18/34/50` ("small caps = CIFAR-style"): 3x3 stride-1 stem, no max-pool, 1x1 conv + BN projection
shortcuts, global average pool, `linear` head; PyTorch's default init. Names as in BiP's resnet_cifar.py
(conv1, bn1, layer1-4, shortcut.0/.1, linear).
"""

from __future__ import annotations

from torch import nn
from torch.nn import functional as F

from bip_torch.layers import layer_factories


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, conv, in_planes, planes, stride=1):
        super().__init__()
        self.conv1 = conv(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(conv(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, conv, in_planes, planes, stride=1):
        super().__init__()
        self.conv1 = conv(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes * 4:
            self.shortcut = nn.Sequential(
                conv(in_planes, planes * 4, 1, stride, bias=False), nn.BatchNorm2d(planes * 4)
            )

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + self.shortcut(x))


class ResNetCifar(nn.Module):
    def __init__(self, block, num_blocks, layer_type="dense", num_classes=10, width=64):
        super().__init__()
        conv, linear = layer_factories(layer_type)
        self.in_planes = width  # 64 in every released model (smaller widths: tests)
        self.conv1 = conv(3, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.layer1 = self._stage(conv, block, width, num_blocks[0], 1)
        self.layer2 = self._stage(conv, block, 2 * width, num_blocks[1], 2)
        self.layer3 = self._stage(conv, block, 4 * width, num_blocks[2], 2)
        self.layer4 = self._stage(conv, block, 8 * width, num_blocks[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.linear = linear(8 * width * block.expansion, num_classes)

    def _stage(self, conv, block, planes, n, stride):
        layers = []
        for s in [stride] + [1] * (n - 1):
            layers.append(block(conv, self.in_planes, planes, s))
            self.in_planes = planes * block.expansion
        return nn.Sequential(*layers)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return self.linear(self.avgpool(out).flatten(1))


def resnet18(layer_type="dense", num_classes=10):
    return ResNetCifar(BasicBlock, [2, 2, 2, 2], layer_type, num_classes)


def resnet34(layer_type="dense", num_classes=10):
    return ResNetCifar(BasicBlock, [3, 4, 6, 3], layer_type, num_classes)


def resnet50(layer_type="dense", num_classes=10):
    return ResNetCifar(Bottleneck, [3, 4, 6, 3], layer_type, num_classes)
