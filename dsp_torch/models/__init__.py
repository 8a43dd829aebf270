"""Model registry: CIFAR ResNets (option B) and torchvision ImageNet ResNets."""

from __future__ import annotations

from torch import nn

from dsp_torch.models.cifar_resnet import CifarResNet, ResNetBasicblock
from shared.errors import UserError

CIFAR_DEPTHS = (20, 32, 44, 56, 110)
IMAGENET_ARCHS = ("resnet18", "resnet34", "resnet50")


def check_depth(depth: int) -> int:
    if depth not in CIFAR_DEPTHS:
        raise UserError(f"-l/--layers must be one of {CIFAR_DEPTHS}, got {depth}")
    return depth


def cifar_resnet(depth: int, num_classes: int = 10) -> CifarResNet:
    return CifarResNet(check_depth(depth), num_classes)


def imagenet_resnet(arch: str, num_classes: int = 1000) -> nn.Module:
    """torchvision's ResNet (v1.5), randomly initialised (weights are never downloaded here)."""
    import torchvision

    if arch not in IMAGENET_ARCHS:
        raise UserError(f"--arch must be one of {IMAGENET_ARCHS}, got {arch!r}")
    return getattr(torchvision.models, arch)(weights=None, num_classes=num_classes)


def build_model(arch: dict) -> nn.Module:
    """Build from the `arch` dict stored in checkpoints: {"family": "cifar"|"imagenet", ...}."""
    if arch.get("family") == "cifar":
        return cifar_resnet(int(arch["depth"]), int(arch.get("num_classes", 10)))
    if arch.get("family") == "imagenet":
        return imagenet_resnet(arch["name"], int(arch.get("num_classes", 1000)))
    raise UserError(f"unknown model description {arch!r}")


__all__ = ["CifarResNet", "ResNetBasicblock", "build_model", "check_depth", "cifar_resnet", "imagenet_resnet"]
