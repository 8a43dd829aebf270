"""ILSVRC (ImageNet) for EKG's ResNet-18/34/50 path, on the shared TF pipeline (`shared.tf_imagenet`).

The authors never released their ImageNet code; this recipe is INFERRED (research/ekg.md 1.10) and every
ILSVRC run record says so (`variant.recipe = "inferred"`):

- `--data_dir` = a folder with `train/` and `val/` (ImageFolder trees of class folders, or BiP LMDBs),
  labels in torchvision's ImageFolder order; 1000 classes (the FC has 1000 outputs).
- Evaluation / search / memory-bank input: shorter side to 256/224 x size, centre crop `size`, RGB mean
  (123.675, 116.28, 103.53), std (58.395, 57.12, 57.375) (the first commit's ILSVRC test loader; bilinear
  here, bicubic there).
- D^val / D^subset: the CIFAR rule carried over (the last `--val_per_class`, first `--subset_per_class`
  training images of each class, shuffled with seed 1; the ImageNet sizes are unknown).
- D^val is preprocessed once into a memory-mapped float32 .npy in the run folder (`search_val.npy`, written
  in chunks), so the search's many passes over it need neither RAM nor JPEG decoding. The warm-up streams
  D^subset and the memory bank streams the whole training set in file order (one pass, every teacher per
  batch, written chunk by chunk into the memory-mapped bank).
- Fine-tuning augmentation: torchvision's RandomResizedCrop + flip (the sister repository's), per image; with
  the memory bank each image gets two independently drawn views. The dataset carries each sample's index, by
  which its label and memory-bank row are looked up; every random choice is a function of (seed, epoch,
  index), so a resumed run replays its epoch and skips the batches done.
- `--image_size` (default 224) shrinks the crops for smoke runs on tiny folders; the FLOPs counter always
  counts at 224, as the paper reports.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path

import numpy as np
import tensorflow as tf

from shared import tf_imagenet
from shared.errors import UserError
from shared.paths import data_root

MEAN = (123.675, 116.28, 103.53)
STD = (58.395, 57.12, 57.375)
RECIPE = "inferred"
VIEW_SEED_STEP = 7919  # the second view's seed: (epoch seed + step, index)


def eval_preprocess(size: int):
    return tf_imagenet.normalised(tf_imagenet.resize_shorter_center_crop(size), MEAN, STD)


def train_preprocess(size: int, views: int):
    """RandomResizedCrop + flip, normalised; with views=2 a [2, size, size, 3] stack of two draws."""
    one = tf_imagenet.normalised(tf_imagenet.random_resized_crop_flip(size), MEAN, STD)
    if views == 1:
        return one
    return lambda image, seed: tf.stack([one(image, seed), one(image, seed + tf.constant([VIEW_SEED_STEP, 0]))])


class ImageNetSplit:
    """One split (its first `limit` samples) with what the stages need: labels, batches in file order,
    a seeded fine-tuning stream, and its identity for run records."""

    def __init__(self, source: tf_imagenet.ImageSource, split: str, size: int, limit: int | None = None):
        if limit is not None and limit < len(source):
            if limit < 1:
                raise UserError(f"a data limit must be >= 1, got {limit}")
            source = tf_imagenet.subset(source, np.arange(limit))
        self.source, self.split, self.size = source, split, int(size)
        self.labels = source.labels.astype(np.int32)

    def __len__(self) -> int:
        return len(self.source)

    def identity(self) -> dict:
        return {**self.source.identity(self.split), "image_size": self.size, "recipe": RECIPE}

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for p in self.source.paths or [str(self.source.location)]:
            h.update(p.encode())
        h.update(self.source.labels.tobytes())
        return h.hexdigest()[:16]

    def batches(self, batch_size: int, indices: np.ndarray | None = None):
        """(normalised float32 images, int32 labels) of `indices` (default all), in that order, unaugmented."""
        source = self.source if indices is None else tf_imagenet.subset(self.source, indices)
        ds = tf_imagenet.imagenet_dataset(
            source, training=False, batch_size=batch_size, preprocess=eval_preprocess(self.size)
        )
        yield from ds

    def cache(self, indices: np.ndarray, path: Path, batch_size: int) -> np.ndarray:
        """The unaugmented images of `indices` as a float32 .npy at `path` (written in chunks, renamed when
        complete; reused when present with the right shape), memory-mapped read-only."""
        shape = (len(indices), self.size, self.size, 3)
        if path.is_file():
            arr = np.load(path, mmap_mode="r")
            if arr.shape == shape:
                return arr
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=shape)
        i = 0
        for x, _ in self.batches(batch_size, indices):
            out[i : i + len(x)] = x.numpy()
            i += len(x)
        out.flush()
        del out
        os.replace(tmp, path)
        return np.load(path, mmap_mode="r")

    def stream(self, batch_size: int, seed: int, views: int) -> ImageNetStream:
        return ImageNetStream(self, batch_size, seed, views)


class ImageNetStream:
    """Fine-tuning batches: step s -> (indices, augmented normalised views, labels), a function of
    (seed, s): epoch e = s // steps_per_epoch is the shared pipeline's epoch e; a step out of sequence
    (a resume) replays its epoch and skips the batches before it."""

    def __init__(self, split: ImageNetSplit, batch_size: int, seed: int, views: int):
        self.split, self.batch_size, self.seed, self.views = split, int(batch_size), int(seed), int(views)
        self.steps_per_epoch = len(split) // self.batch_size
        if self.steps_per_epoch < 1:
            raise UserError(f"batch size {batch_size} is larger than the {len(split)} training images")
        # the dataset's label field carries the sample index (labels and bank rows are looked up by it)
        self._indexed = dataclasses.replace(split.source, labels=np.arange(len(split), dtype=np.int64))
        self._next, self._it = None, None

    def batch(self, step: int):
        epoch, i = divmod(int(step), self.steps_per_epoch)
        if self._next != step:
            ds = tf_imagenet.imagenet_dataset(
                self._indexed,
                training=True,
                batch_size=self.batch_size,
                preprocess=train_preprocess(self.split.size, self.views),
                seed=self.seed,
                epoch=epoch,
            )
            self._it = iter(ds.skip(i))
        x, idx = next(self._it)
        self._next = step + 1 if i + 1 < self.steps_per_epoch else None
        idx = idx.numpy().astype(np.int64)
        return idx, x, self.split.labels[idx]


def load_splits(data_dir: str | None, size: int, train_limit=None, test_limit=None):
    """(train, val) ImageNetSplits of `<data_dir>/train` and `<data_dir>/val`."""
    root = data_root(data_dir)
    if root is None:
        raise UserError("no ILSVRC folder given: pass --data_dir DIR (a folder holding train/ and val/)")
    train, val = tf_imagenet.split_sources(root)
    return ImageNetSplit(train, "train", size, train_limit), ImageNetSplit(val, "val", size, test_limit)
