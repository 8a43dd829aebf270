"""EKG's networks: `build_model(arch, dataset)` and the names the original's `--arch` accepts."""

from __future__ import annotations

from ekg_tf2.models.resnet import ResNet, build, param_shapes, widths_from_shapes
from shared.errors import UserError

CIFAR_ARCHS = ("ResNet-20", "ResNet-56", "ResNet-8")  # ResNet-8: one block per stage, for tests and demos
IMAGENET_ARCHS = ("ResNet-18", "ResNet-34", "ResNet-50")
ARCHS = CIFAR_ARCHS + IMAGENET_ARCHS
DATASETS = {"CIFAR10": 10, "CIFAR100": 100, "ILSVRC": 1000, "digits": 10}  # digits: embedded demo set


def check_arch(arch: str, dataset: str) -> int:
    """The number of classes; UserError for an unknown arch/dataset or a mismatched pair."""
    if arch not in ARCHS:
        raise UserError(f"unknown --arch {arch!r}; expected one of {', '.join(ARCHS)}")
    if dataset not in DATASETS:
        raise UserError(f"unknown --dataset {dataset!r}; expected one of {', '.join(DATASETS)}")
    if (dataset == "ILSVRC") != (arch in IMAGENET_ARCHS):
        kind = "ImageNet (ILSVRC)" if arch in IMAGENET_ARCHS else "CIFAR"
        raise UserError(f"--arch {arch} is a {kind} network; it does not go with --dataset {dataset}")
    return DATASETS[dataset]


def build_model(arch: str, dataset: str, widths: dict[str, int] | None = None, seed: int = 0) -> ResNet:
    return build(arch, check_arch(arch, dataset), widths, seed)


__all__ = ["ARCHS", "DATASETS", "ResNet", "build_model", "check_arch", "param_shapes", "widths_from_shapes"]
