"""The CIFAR ResNet the DSP authors use (He et al. 2016, Sec. 4.2) with option-B shortcuts.

Option B: a 1x1 conv (stride s, no bias) + BN projection wherever the stride or the width changes
(the first block of stages 2 and 3); identity elsewhere. Convs have no bias. Module names follow the
authors' code (`conv_1_3x3`, `bn_1`, `stage_{1,2,3}`, `conv_a/bn_a/conv_b/bn_b`, `downsample`,
`classifier`): the DSP wrappers select layers by these names and their checkpoints use them.
"""

from __future__ import annotations

import torch
from torch import nn

from shared.errors import UserError


class ResNetBasicblock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv_a = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn_a = nn.BatchNorm2d(planes)
        self.conv_b = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn_b = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = torch.relu(self.bn_a(self.conv_a(x)))
        out = self.bn_b(self.conv_b(out))
        return torch.relu(residual + out)


class CifarResNet(nn.Module):
    def __init__(self, depth: int, num_classes: int = 10):
        super().__init__()
        if (depth - 2) % 6 != 0 or depth < 8:
            raise UserError(f"CIFAR ResNet depth must be 6n+2 (20, 32, 44, 56, 110), got {depth}")
        self.depth = depth
        self.num_classes = num_classes
        n = (depth - 2) // 6
        self.conv_1_3x3 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn_1 = nn.BatchNorm2d(16)
        self.inplanes = 16
        self.stage_1 = self._make_stage(16, n, 1)
        self.stage_2 = self._make_stage(32, n, 2)
        self.stage_3 = self._make_stage(64, n, 2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(64, num_classes)
        # Init as the authors': Kaiming normal (fan_out) convs, BN gamma 1 / beta 0, Linear bias 0.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def _make_stage(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        layers = []
        for i in range(blocks):
            s = stride if i == 0 else 1
            downsample = None
            if s != 1 or self.inplanes != planes:  # option B projection
                downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes, 1, s, bias=False), nn.BatchNorm2d(planes))
            layers.append(ResNetBasicblock(self.inplanes, planes, s, downsample))
            self.inplanes = planes
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn_1(self.conv_1_3x3(x)))
        x = self.stage_3(self.stage_2(self.stage_1(x)))
        return self.classifier(torch.flatten(self.avgpool(x), 1))
