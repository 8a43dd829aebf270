"""Adapter from the shared readers to device-resident torch batches, with the authors' augmentation.

CIFAR-10 (and the embedded digits set, same shape): RandomHorizontalFlip + RandomCrop(32, padding 4) on
the training set, Normalize with mean (0.4914, 0.4822, 0.4465) and std (0.2470, 0.2435, 0.2616), and
drop_last on the training loader (390 steps per epoch on the full set), as in the authors' scripts.
ImageNet: torchvision transforms over an ImageFolder tree or a BiP-format LMDB (see `imagenet_loaders`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from shared.data import CIFAR_MEAN, CIFAR_STD, ArraySplit, load_image_classification
from shared.errors import UserError
from shared.torch_train import DistContext, TensorLoader

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class TrainTestData:
    """The loaders of a stage: anything iterable over (x, y) on the device, with len() and set_epoch()."""

    train: TensorLoader
    test: TensorLoader
    identity: dict  # what run records store about the test data
    num_classes: int
    full_size: bool  # the official full test set (a reproduction can be compared; else a smoke run)


def cifar_loaders(
    dataset: str,
    data_dir,
    batch_size: int,
    device: torch.device,
    ctx: DistContext,
    seed: int = 0,
    train_limit: int | None = None,
    test_batch_size: int = 500,
) -> TrainTestData:
    train = load_image_classification(dataset, "train", data_dir)
    test = load_image_classification(dataset, "test", data_dir)
    if train_limit:
        train = _balanced_subset(train, train_limit)
    if len(train) < batch_size:
        raise UserError(f"--batch-size {batch_size} is larger than the {len(train)} training images")
    train_loader = TensorLoader(
        train.images, train.labels, batch_size, device, CIFAR_MEAN, CIFAR_STD, train=True, seed=seed, ctx=ctx
    )
    test_loader = TensorLoader(
        test.images, test.labels, test_batch_size, device, CIFAR_MEAN, CIFAR_STD, train=False, ctx=ctx
    )
    full = dataset == "cifar10" and len(train) == 50_000 and len(test) == 10_000
    return TrainTestData(train_loader, test_loader, test.identity(), train.num_classes, full)


def _balanced_subset(split: ArraySplit, n: int) -> ArraySplit:
    """The first n images of an order that takes one image of each class in turn (class-balanced)."""
    per_class = [np.flatnonzero(split.labels == c) for c in range(split.num_classes)]
    depth = max(len(p) for p in per_class)
    interleaved = [p[i] for i in range(depth) for p in per_class if i < len(p)]
    sel = np.array(interleaved[:n])
    return ArraySplit(split.name, split.split, split.images[sel], split.labels[sel], split.classes, split.source)


# ----------------------------------------------------------------------------------------------------
# ImageNet: an ImageFolder tree or BiP's LMDB files, through torch DataLoaders
# ----------------------------------------------------------------------------------------------------


class _SampleDataset(torch.utils.data.Dataset):
    """(path or LMDB index) -> (transformed image, label), decoding with Pillow."""

    def __init__(self, source, transform):
        from shared.data.imagenet import imagefolder_samples
        from shared.data.lmdb_store import LmdbImageDataset

        self.transform = transform
        if str(source).endswith(".lmdb"):
            self.lmdb, self.samples = LmdbImageDataset(source), None
            self.classes = None
        else:
            self.lmdb = None
            self.samples, self.classes = imagefolder_samples(source)

    def __len__(self):
        return len(self.lmdb) if self.lmdb is not None else len(self.samples)

    def __getitem__(self, i):
        import io

        from PIL import Image

        if self.lmdb is not None:
            raw, label = self.lmdb[i]
            img = Image.open(io.BytesIO(raw)).convert("RGB")
        else:
            path, label = self.samples[i]
            with Image.open(path) as f:
                img = f.convert("RGB")
        return self.transform(img), label


class _DeviceLoader:
    """A DataLoader (with a DistributedSampler under torchrun) that yields batches on the device."""

    def __init__(self, dataset, batch_size, device, ctx: DistContext, train: bool, workers: int, seed: int):
        from torch.utils.data import DataLoader, DistributedSampler

        self.sampler = (
            DistributedSampler(dataset, ctx.world_size, ctx.rank, shuffle=train, seed=seed, drop_last=train)
            if (ctx.distributed and train)
            else None
        )
        per_rank = batch_size // ctx.world_size if train else batch_size
        gen = torch.Generator().manual_seed(seed)
        self.loader = DataLoader(
            dataset,
            per_rank,
            shuffle=train and self.sampler is None,
            sampler=self.sampler,
            num_workers=workers,
            drop_last=train,
            pin_memory=device.type == "cuda",
            generator=gen,
        )
        self.device, self.epoch = device, 0

    def set_epoch(self, epoch):
        self.epoch = epoch
        if self.sampler is not None:
            self.sampler.set_epoch(epoch)
        else:
            self.loader.generator.manual_seed(self.loader.generator.initial_seed() + epoch)

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        for x, y in self.loader:
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)


def imagenet_loaders(
    train_source,
    val_source,
    batch_size: int,
    device,
    ctx: DistContext,
    *,
    workers: int = 8,
    image_size: int = 224,
    seed: int = 0,
) -> TrainTestData:
    """Train: RandomResizedCrop + flip; val: Resize(size * 8/7) + CenterCrop (the torchvision recipe BiP uses).

    Sources are class-folder trees (ImageFolder order) or BiP-format `.lmdb` files."""
    from torchvision import transforms as T

    norm = T.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    train_tf = T.Compose([T.RandomResizedCrop(image_size), T.RandomHorizontalFlip(), T.ToTensor(), norm])
    val_tf = T.Compose([T.Resize(int(round(image_size * 256 / 224))), T.CenterCrop(image_size), T.ToTensor(), norm])
    train_set, val_set = _SampleDataset(train_source, train_tf), _SampleDataset(val_source, val_tf)
    if train_set.classes and val_set.classes and train_set.classes != val_set.classes:
        raise UserError(f"{train_source} and {val_source} have different class folders")
    num_classes = len(train_set.classes) if train_set.classes else 1000
    identity = {"name": "imagenet", "split": "val", "n": len(val_set), "source": str(val_source)}
    return TrainTestData(
        _DeviceLoader(train_set, batch_size, device, ctx, True, workers, seed),
        _DeviceLoader(val_set, batch_size, device, ctx, False, workers, seed),
        identity,
        num_classes,
        len(val_set) == 50_000,
    )
