"""`vgg16_bn` for CIFAR (HYDRA / BiP vgg_cifar.py): 13 conv(3x3, no bias) + BN + ReLU with 5 max-pools,
AdaptiveAvgPool2d(2, 2), classifier 512*4 -> 256 -> 256 -> C (other `cfg` widths: tests). The released
BiP constructors raise NameError (an undefined `init_type`); we use HYDRA's kaiming-normal init, as its
configs set.
"""

from __future__ import annotations

from torch import nn

from bip_torch.layers import layer_factories

CFG16 = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


class VGG(nn.Module):
    def __init__(self, cfg, layer_type="dense", num_classes=10):
        super().__init__()
        conv, linear = layer_factories(layer_type)
        layers, c = [], 3
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [conv(c, v, 3, padding=1, bias=False), nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
                c = v
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((2, 2))
        self.classifier = nn.Sequential(
            linear(c * 4, 256), nn.ReLU(True), linear(256, 256), nn.ReLU(True), linear(256, num_classes)
        )
        for m in self.modules():  # HYDRA's initialize_weights(model, "kaiming_normal")
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        return self.classifier(self.avgpool(self.features(x)).flatten(1))


def vgg16_bn(layer_type="dense", num_classes=10):
    return VGG(CFG16, layer_type, num_classes)
