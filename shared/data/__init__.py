"""Dataset readers and preparers. Readers return uint8 NHWC arrays (or raw image bytes) and int labels;
augmentation lives in each framework's adapter (`<paper>/data.py`)."""

from shared.data.arrays import ArraySplit
from shared.data.cifar import CIFAR_MEAN, CIFAR_STD, find_cifar_folder, load_cifar
from shared.data.digits import load_digits_cifar

__all__ = [
    "ArraySplit",
    "CIFAR_MEAN",
    "CIFAR_STD",
    "find_cifar_folder",
    "load_cifar",
    "load_digits_cifar",
    "load_image_classification",
]


def load_image_classification(name: str, split: str, data_dir=None) -> ArraySplit:
    """CIFAR-shaped arrays by name: 'cifar10', 'cifar100' (need a data folder) or 'digits' (embedded)."""
    from shared.errors import UserError

    if name == "digits":
        return load_digits_cifar(split)
    if name in ("cifar10", "cifar100"):
        return load_cifar(data_dir, name, split)
    raise UserError(f"unknown dataset {name!r}; expected one of: cifar10, cifar100, digits")
