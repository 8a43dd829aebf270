"""`ResNet18/34/50`: torchvision-style ResNets (7x7 stride-2 stem, 3x3/2 max-pool, `downsample.0/.1`
projections, `fc` head) for TinyImageNet / ImageNet, with Kaiming-normal (fan_out) conv init. Names as
torchvision's, which BiP's models/resnet.py keeps.
"""

from __future__ import annotations

from torch import nn

from bip_torch.layers import layer_factories


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, conv, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = conv(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, conv, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = conv(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    def __init__(self, block, layers, layer_type="dense", num_classes=1000, width=64):
        super().__init__()
        conv, linear = layer_factories(layer_type)
        self.inplanes = width  # 64 in every released model (smaller widths: tests)
        self.conv1 = conv(3, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = self._stage(conv, block, width, layers[0], 1)
        self.layer2 = self._stage(conv, block, 2 * width, layers[1], 2)
        self.layer3 = self._stage(conv, block, 4 * width, layers[2], 2)
        self.layer4 = self._stage(conv, block, 8 * width, layers[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = linear(8 * width * block.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _stage(self, conv, block, planes, n, stride):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                conv(self.inplanes, planes * block.expansion, 1, stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(conv, self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(conv, self.inplanes, planes) for _ in range(1, n)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x).flatten(1))


def ResNet18(layer_type="dense", num_classes=1000):  # noqa: N802 (the original's name)
    return ResNet(BasicBlock, [2, 2, 2, 2], layer_type, num_classes)


def ResNet34(layer_type="dense", num_classes=1000):  # noqa: N802
    return ResNet(BasicBlock, [3, 4, 6, 3], layer_type, num_classes)


def ResNet50(layer_type="dense", num_classes=1000):  # noqa: N802
    return ResNet(Bottleneck, [3, 4, 6, 3], layer_type, num_classes)
