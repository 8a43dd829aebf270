"""Adapter from the shared readers to device-resident torch batches, with the authors' augmentation.

CIFAR-10 (and the embedded digits set, same shape): RandomHorizontalFlip + RandomCrop(32, padding 4) on
the training set, Normalize with mean (0.4914, 0.4822, 0.4465) and std (0.2470, 0.2435, 0.2616), and
drop_last on the training loader (390 steps per epoch on the full set), as in the authors' scripts.
ImageNet: torchvision transforms over an ImageFolder tree or a BiP-format LMDB (`shared.torch_imagenet`,
re-exported here as `imagenet_loaders`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from shared.data import CIFAR_MEAN, CIFAR_STD, ArraySplit, load_image_classification
from shared.errors import UserError
from shared.torch_imagenet import IMAGENET_MEAN, IMAGENET_STD, imagenet_loaders  # noqa: F401 (public names)
from shared.torch_train import DistContext, TensorLoader


@dataclass
class TrainTestData:
    """The loaders of a stage: anything iterable over (x, y) on the device, with len() and set_epoch()."""

    train: TensorLoader
    test: TensorLoader
    identity: dict  # what run records store about the test data
    num_classes: int
    full_size: bool  # the official full test set (a reproduction can be compared; else a smoke run)
    train_identity: dict | None = None  # the training data's (a stage resumes only on the same data)


def cifar_loaders(
    dataset: str,
    data_dir,
    batch_size: int,
    device: torch.device,
    ctx: DistContext,
    seed: int = 0,
    train_limit: int | None = None,
    test_batch_size: int = 500,
    test_limit: int | None = None,
) -> TrainTestData:
    train = load_image_classification(dataset, "train", data_dir)
    test = load_image_classification(dataset, "test", data_dir)
    if train_limit:
        train = _balanced_subset(train, train_limit)
    if test_limit:
        test = test.subset(test_limit)
    if len(train) < batch_size:
        raise UserError(f"--batch-size {batch_size} is larger than the {len(train)} training images")
    train_loader = TensorLoader(
        train.images, train.labels, batch_size, device, CIFAR_MEAN, CIFAR_STD, train=True, seed=seed, ctx=ctx
    )
    test_loader = TensorLoader(
        test.images, test.labels, test_batch_size, device, CIFAR_MEAN, CIFAR_STD, train=False, ctx=ctx
    )
    full = dataset == "cifar10" and len(train) == 50_000 and len(test) == 10_000
    return TrainTestData(train_loader, test_loader, test.identity(), train.num_classes, full, train.identity())


def _balanced_subset(split: ArraySplit, n: int) -> ArraySplit:
    """The first n images of an order that takes one image of each class in turn (class-balanced)."""
    per_class = [np.flatnonzero(split.labels == c) for c in range(split.num_classes)]
    depth = max(len(p) for p in per_class)
    interleaved = [p[i] for i in range(depth) for p in per_class if i < len(p)]
    sel = np.array(interleaved[:n])
    return ArraySplit(split.name, split.split, split.images[sel], split.labels[sel], split.classes, split.source)
