"""ImageNet for the torch subprojects: DataLoaders over an ImageFolder tree or a BiP-format LMDB.

The file list and the label ids come from the framework-free readers (`shared.data.imagenet`: torchvision
ImageFolder order; `shared.data.lmdb_store`: BiP's LMDB), so a torch run and a TF run
(`shared.tf_imagenet`) over the same folder see the same labels. Preprocessing is the torchvision recipe
both torch papers use: train RandomResizedCrop + horizontal flip, eval Resize(size * 256/224) +
CenterCrop(size), normalised by the ImageNet mean/std. Under torchrun the training set is sharded by a
DistributedSampler; every loader yields batches already on the device.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from shared.data.imagenet import IMAGENET_MEAN, IMAGENET_STD
from shared.errors import UserError
from shared.torch_train import DistContext

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "DeviceLoader", "ImageNetData", "SampleDataset", "imagenet_loaders"]


class SampleDataset(torch.utils.data.Dataset):
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


class DeviceLoader:
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


@dataclass
class ImageNetData:
    """The loaders of a run: iterables over (x, y) on the device, with len() and set_epoch()."""

    train: DeviceLoader
    test: DeviceLoader
    identity: dict  # what run records store about the test data
    num_classes: int
    full_size: bool  # the official 50,000-image val set


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
) -> ImageNetData:
    """Train: RandomResizedCrop + flip; val: Resize(size * 256/224) + CenterCrop (the torchvision recipe).

    Sources are class-folder trees (ImageFolder order) or BiP-format `.lmdb` files."""
    from torchvision import transforms as T

    norm = T.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    train_tf = T.Compose([T.RandomResizedCrop(image_size), T.RandomHorizontalFlip(), T.ToTensor(), norm])
    val_tf = T.Compose([T.Resize(int(round(image_size * 256 / 224))), T.CenterCrop(image_size), T.ToTensor(), norm])
    train_set, val_set = SampleDataset(train_source, train_tf), SampleDataset(val_source, val_tf)
    if train_set.classes and val_set.classes and train_set.classes != val_set.classes:
        raise UserError(f"{train_source} and {val_source} have different class folders")
    num_classes = len(train_set.classes) if train_set.classes else 1000
    identity = {"name": "imagenet", "split": "val", "n": len(val_set), "source": str(val_source)}
    return ImageNetData(
        DeviceLoader(train_set, batch_size, device, ctx, True, workers, seed),
        DeviceLoader(val_set, batch_size, device, ctx, False, workers, seed),
        identity,
        num_classes,
        len(val_set) == 50_000,
    )
