"""Flags shared by `cifar10_train` and `cifar10_eval` (the original programs' names and defaults), and
loading their data."""

from __future__ import annotations

import argparse

from ista_tf import train
from ista_tf.models import MODELS
from shared.data import ArraySplit, load_image_classification
from shared.errors import UserError
from shared.paths import DATA_ENV, data_root

# The original's default was /tmp/cifar10_train; runs here go under the project's runs/ folder.
DEFAULT_TRAIN_DIR = "runs/ista/cifar10_train"


def str2bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "y", "on"):
        return True
    if value in ("0", "false", "no", "n", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    pass


def add_common_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--train_dir",
        default=DEFAULT_TRAIN_DIR,
        help="prefix of the stage folders: version V lives in <train_dir>_V (original default /tmp/cifar10_train)",
    )
    parser.add_argument("--batch_size", type=int, default=125, help="images per batch (per update when training)")
    parser.add_argument(
        "--data_dir",
        "--data-dir",
        default=None,
        help=f"folder holding CIFAR-10 in the official python layout (cifar-10-batches-py/) or its "
        f"parent; default ${DATA_ENV}. The original read binary batches from /tmp/cifar10_data",
    )
    parser.add_argument(
        "--model",
        default="resnet20",
        choices=sorted(MODELS),
        help="network: the released code's resnet20 variant or cnn4, the paper's ConvNet (the "
        "original switched by editing inference() in cifar10.py)",
    )
    parser.add_argument(
        "--dataset",
        default="cifar10",
        choices=("cifar10", "digits"),
        help="cifar10 (needs --data_dir), or the embedded digits shaped like CIFAR (quick trials)",
    )
    parser.add_argument(
        "--xla",
        default="auto",
        choices=train.XLA_CHOICES,
        help="compile steps with XLA (tf.function(jit_compile=True)); auto: on a GPU only (on a CPU "
        "XLA's convolutions are slower than oneDNN's: python -m ista_tf.bench)",
    )
    parser.add_argument(
        "--records",
        default=None,
        metavar="DIR",
        help="also write the run record (shared results schema) under DIR/ista/",
    )


def load_split(dataset: str, split: str, data_dir: str | None) -> ArraySplit:
    """The train or test split; one clear message when no data folder is given or it is wrong."""
    if dataset == "cifar10" and data_root(data_dir) is None:
        raise UserError(
            f"no CIFAR-10 folder given: pass --data_dir DIR or set {DATA_ENV} (a folder holding "
            "cifar-10-batches-py/; `python -m shared.data cifar10 --out DIR` prepares one)"
        )
    return load_image_classification(dataset, split, data_dir)
