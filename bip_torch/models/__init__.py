"""The architectures of BiP's models/__init__.py, by their original names.

`build(arch, layer_type, num_classes, k)` gives the model with masked layers of the given type, the
prune rate set and the global unstructured mask installed.
"""

from __future__ import annotations

from bip_torch.layers import install_global_mask, set_prune_rate
from bip_torch.models.resnet import ResNet18, ResNet34, ResNet50
from bip_torch.models.resnet_cifar import resnet18, resnet34, resnet50
from bip_torch.models.resnets import resnet20s, resnet32s, resnet44s, resnet56s
from bip_torch.models.vgg_cifar import vgg16_bn
from bip_torch.models.wideresnet import wrn_28_4, wrn_28_10
from shared.errors import UserError

ARCHS = {
    f.__name__: f
    for f in (
        resnet20s,
        resnet32s,
        resnet44s,
        resnet56s,
        resnet18,
        resnet34,
        resnet50,
        ResNet18,
        ResNet34,
        ResNet50,
        vgg16_bn,
        wrn_28_4,
        wrn_28_10,
    )
}


def build(arch: str, layer_type: str = "dense", num_classes: int = 10, k: float = 1.0):
    if arch not in ARCHS:
        raise UserError(f"--arch must be one of {', '.join(ARCHS)}, got {arch!r}")
    model = ARCHS[arch](layer_type=layer_type, num_classes=num_classes)
    set_prune_rate(model, k)
    return install_global_mask(model)
