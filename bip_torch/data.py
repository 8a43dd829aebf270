"""Adapter from the shared readers to BiP's loaders: train, "val" and test, with the original transforms.

- CIFAR-10/100 (official python layout, `--data-dir` holding `cifar-10-batches-py/` or
  `cifar-100-python/`): RandomCrop(32, pad 4) + flip, Normalize with BiP's per-dataset mean/std when
  `--normalize` (every config sets it). Held on the device (`shared.torch_train.TensorLoader`).
- TinyImageNet (`--data-dir` = the user's `tiny-imagenet-200` folder, read only): train = all 100k
  images, test = the documented deterministic half of the official val set (25 per class, see
  `shared.data.tinyimagenet`); ImageNet mean/std, and, as the original, normalise BEFORE the
  pad-crop, so the padding is the mean colour (zero in normalised space).
- ImageNet: BiP's LMDB files (`<data-dir>/train.lmdb`, `val.lmdb`; `--dataset ImageNet`) or class
  folders (`<data-dir>/train`, `val`; `--dataset ImageNetOrigin`), torchvision transforms (`shared.torch_imagenet`).
- The "val" loader is, as in the original, a second, independently shuffled loader over the TRAINING
  set (the bilevel trainer's lower level reads it); nothing is held out.
- `digits` (an addition): the embedded scikit-learn digits shaped like CIFAR, for demos and tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from shared.data import load_image_classification
from shared.errors import UserError
from shared.torch_train import DistContext, TensorLoader

CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4866, 0.4409), (0.2673, 0.2564, 0.2762)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
DATASETS = ("CIFAR10", "CIFAR100", "TinyImageNet", "ImageNet", "ImageNetOrigin", "ImageNetLMDB", "digits")
NUM_CLASSES = {"CIFAR10": 10, "CIFAR100": 100, "TinyImageNet": 200, "ImageNet": 1000, "ImageNetOrigin": 1000}


@dataclass
class BipData:
    train: object
    val: object  # a second shuffle of the training set
    test: object
    num_classes: int
    identity: dict
    full_size: bool


def _stats(dataset: str, normalize: bool):
    if not normalize:
        return (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    if dataset == "CIFAR100":
        return CIFAR100_MEAN, CIFAR100_STD
    if dataset in ("TinyImageNet", "ImageNet", "ImageNetOrigin"):
        return IMAGENET_MEAN, IMAGENET_STD
    return CIFAR10_MEAN, CIFAR10_STD


def _limit(split, n):
    """The first n images of an order taking one image of each class in turn (class-balanced)."""
    per = [np.flatnonzero(split.labels == c) for c in range(split.num_classes)]
    order = [p[i] for i in range(max(map(len, per))) for p in per if i < len(p)][:n]
    sel = np.array(order)
    return type(split)(split.name, split.split, split.images[sel], split.labels[sel], split.classes, split.source)


def load_data(
    dataset: str,
    data_dir,
    batch_size: int,
    test_batch_size: int,
    device: torch.device,
    ctx: DistContext,
    *,
    normalize: bool = True,
    seed: int = 0,
    train_limit: int | None = None,
    test_limit: int | None = None,
    num_workers: int = 2,
) -> BipData:
    if dataset == "ImageNetLMDB":
        raise UserError(
            "--dataset ImageNetLMDB is listed by the original but never defined there (KeyError); "
            "use --dataset ImageNet for BiP's LMDB files or ImageNetOrigin for class folders"
        )
    if dataset not in DATASETS:
        raise UserError(f"--dataset must be one of {', '.join(DATASETS[:-2])} (or digits), got {dataset!r}")
    if dataset in ("ImageNet", "ImageNetOrigin"):
        return _imagenet(dataset, data_dir, batch_size, device, ctx, seed, num_workers)
    mean, std = _stats(dataset, normalize)
    if dataset == "TinyImageNet":
        from shared.data.tinyimagenet import load_tinyimagenet

        train, test = load_tinyimagenet(data_dir, "train"), load_tinyimagenet(data_dir, "test")
        pad_value = "mean"  # BiP's TinyImageNet normalises first, then pads: the padding is the mean colour
    else:
        name = {"CIFAR10": "cifar10", "CIFAR100": "cifar100", "digits": "digits"}[dataset]
        if name != "digits" and not data_dir:
            raise UserError(f"--dataset {dataset} needs --data-dir (or $PRUNING_DATA_DIR): a folder holding it")
        train = load_image_classification(name, "train", data_dir)
        test = load_image_classification(name, "test", data_dir)
        pad_value = 0.0
    if train_limit:
        train = _limit(train, train_limit)
    if test_limit:
        test = _limit(test, test_limit)
    if len(train) < batch_size:
        raise UserError(f"--batch-size {batch_size} is larger than the {len(train)} training images")
    size = train.images.shape[1]

    def make(train_mode, bs, s):
        return TensorLoader(
            train.images if train_mode else test.images,
            train.labels if train_mode else test.labels,
            bs,
            device,
            mean,
            std,
            train=train_mode,
            pad=4 if size <= 64 else 0,
            seed=s,
            ctx=ctx,
            pad_value=pad_value,
        )

    full = (dataset == "CIFAR10" and len(train) == 50_000 and len(test) == 10_000) or (
        dataset == "CIFAR100" and len(train) == 50_000
    )
    full = full or (dataset == "TinyImageNet" and len(train) == 100_000 and len(test) == 5_000)
    # the "val" loader: the same training images, an independent shuffle and augmentation
    return BipData(
        make(True, batch_size, seed), make(True, batch_size, seed + 7919), make(False, test_batch_size, seed),
        train.num_classes, test.identity(), full,
    )  # fmt: skip


def _imagenet(dataset, data_dir, batch_size, device, ctx, seed, workers) -> BipData:
    from shared.torch_imagenet import imagenet_loaders

    if not data_dir:
        raise UserError(f"--dataset {dataset} needs --data-dir")
    root = Path(data_dir)
    names = ("train.lmdb", "val.lmdb") if dataset == "ImageNet" else ("train", "val")
    srcs = [root / n for n in names]
    for s in srcs:
        if not s.exists():
            raise UserError(f"{s} does not exist (--dataset {dataset} reads {names[0]} and {names[1]} in --data-dir)")
    tt = imagenet_loaders(srcs[0], srcs[1], batch_size, device, ctx, workers=workers, seed=seed)
    val = imagenet_loaders(srcs[0], srcs[1], batch_size, device, ctx, workers=workers, seed=seed + 7919).train
    return BipData(tt.train, val, tt.test, tt.num_classes, tt.identity, tt.full_size)
