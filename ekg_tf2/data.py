"""Adapter: the shared CIFAR readers -> EKG's subsets, normalisation and per-batch augmentation.

- Normalisation (the original `dataloader/CIFAR.py`): (x - mean) / std with CIFAR-10 mean
  (113.9, 123.0, 125.3) and std (66.7, 62.1, 63.0), CIFAR-100 (112, 124, 129) / (70, 65, 68). These are
  BGR-ordered numbers applied to RGB arrays; they are kept, since the released weights were trained
  with them (research/ekg.md 5.3).
- Search data (1.3): from the *training* set, class by class in file order, D^val = the last 32 images
  of each class and D^subset = the first 256, each then shuffled with seed 1. Not augmented.
- Fine-tuning augmentation (5.4), applied per batch: flips per image, reflect padding 4 and ONE random
  crop offset for the whole batch; with the memory bank, before that, brightness (+-0.2 on 0..255),
  contrast and saturation in [0.8, 1.2] sampled once per batch, each of the two views independently.
- The training stream is a pure function of (seed, step): a fresh permutation per epoch and stateless
  augmentation seeded by the step, so a resumed run sees the batches an uninterrupted one sees.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from shared.data import ArraySplit, load_image_classification
from shared.errors import UserError
from shared.paths import DATA_ENV, data_root

MEAN_STD = {
    "CIFAR10": ((113.9, 123.0, 125.3), (66.7, 62.1, 63.0)),
    "CIFAR100": ((112.0, 124.0, 129.0), (70.0, 65.0, 68.0)),
}
READER_NAME = {"CIFAR10": "cifar10", "CIFAR100": "cifar100", "digits": "digits"}
PAD = 4
SEARCH_SEED = 1


def load_split(dataset: str, split: str, data_dir: str | None) -> ArraySplit:
    """CIFAR10/CIFAR100 in the official python layout (or 'digits', the embedded demo set)."""
    if dataset not in READER_NAME:
        raise UserError(f"unknown dataset {dataset!r}; expected CIFAR10, CIFAR100 or digits")
    if dataset != "digits" and data_root(data_dir) is None:
        raise UserError(
            f"no {dataset} folder given: pass --data_dir DIR or set {DATA_ENV} (a folder holding "
            f"{'cifar-10-batches-py' if dataset == 'CIFAR10' else 'cifar-100-python'}/; the original "
            "downloaded through keras, which fails offline)"
        )
    return load_image_classification(READER_NAME[dataset], split, data_dir)


def limited(split: ArraySplit, n: int | None) -> ArraySplit:
    """The first n examples (smoke runs), or the whole split."""
    if n is None or n >= len(split):
        return split
    if n < 1:
        raise UserError(f"a data limit must be >= 1, got {n}")
    return split.subset(n)


def mean_std(dataset: str) -> tuple[tuple, tuple]:
    return MEAN_STD.get(dataset, MEAN_STD["CIFAR10"])


def normalize(images, dataset: str) -> tf.Tensor:
    mean, std = mean_std(dataset)
    return (tf.cast(images, tf.float32) - tf.constant(mean)) / tf.constant(std)


def search_subsets(
    labels: np.ndarray, val_per_class: int = 32, subset_per_class: int = 256, seed: int = SEARCH_SEED
) -> tuple[np.ndarray, np.ndarray]:
    """(D^subset indices, D^val indices) into the training set (research/ekg.md 1.3)."""
    subset, val = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        if len(idx) < val_per_class + 1:
            raise UserError(f"class {c} has {len(idx)} training images; D^val needs {val_per_class} + some")
        val.append(idx[-val_per_class:])
        subset.append(idx[: min(subset_per_class, len(idx) - val_per_class)])
    rng = np.random.RandomState(seed)
    subset, val = np.concatenate(subset), np.concatenate(val)
    return subset[rng.permutation(len(subset))], val[rng.permutation(len(val))]


def _uniform(seed, shape, lo, hi):
    return tf.random.stateless_uniform(shape, seed=seed, minval=lo, maxval=hi)


@tf.function(reduce_retracing=True, autograph=False)
def _augment(images, seed, dataset_mean, dataset_std, jitter: bool):
    s = tf.unstack(tf.random.experimental.stateless_split(seed, num=6))
    x = tf.cast(images, tf.float32)
    if jitter:  # sampled once per batch
        x = x + _uniform(s[0], [], -0.2, 0.2)
        x = tf.image.adjust_contrast(x, _uniform(s[1], [], 0.8, 1.2))
        x = tf.image.adjust_saturation(x, _uniform(s[2], [], 0.8, 1.2))
    x = (x - dataset_mean) / dataset_std
    flip = _uniform(s[3], [tf.shape(x)[0], 1, 1, 1], 0.0, 1.0) < 0.5  # per image
    x = tf.where(flip, tf.reverse(x, [2]), x)
    h, w = tf.shape(x)[1], tf.shape(x)[2]
    x = tf.pad(x, [[0, 0], [PAD, PAD], [PAD, PAD], [0, 0]], "REFLECT")
    offset = tf.random.stateless_uniform([2], seed=s[4], maxval=2 * PAD + 1, dtype=tf.int32)  # per batch
    return x[:, offset[0] : offset[0] + h, offset[1] : offset[1] + w, :]


def augment(images, seed, dataset: str, jitter: bool) -> tf.Tensor:
    """One augmented, normalised view of a uint8 batch; `seed` is a stateless seed [2]."""
    mean, std = mean_std(dataset)
    return _augment(tf.convert_to_tensor(images), tf.cast(seed, tf.int64), tf.constant(mean), tf.constant(std), jitter)


class TrainStream:
    """Batches of the fine-tuning stream: step s -> (indices, uint8 images, labels), a pure function of
    (seed, s). `steps_per_epoch` = N // batch (the last partial batch of an epoch is dropped)."""

    def __init__(self, split: ArraySplit, batch_size: int, seed: int):
        self.split, self.batch_size, self.seed = split, int(batch_size), int(seed)
        self.steps_per_epoch = len(split) // self.batch_size
        if self.steps_per_epoch < 1:
            raise UserError(f"batch size {batch_size} is larger than the {len(split)} training images")
        self._perm_epoch, self._perm = -1, None

    def indices(self, step: int) -> np.ndarray:
        epoch, i = divmod(int(step), self.steps_per_epoch)
        if epoch != self._perm_epoch:
            self._perm = np.random.RandomState([self.seed, epoch]).permutation(len(self.split))
            self._perm_epoch = epoch
        return self._perm[i * self.batch_size : (i + 1) * self.batch_size]

    def batch(self, step: int):
        idx = self.indices(step)
        return idx, self.split.images[idx], self.split.labels[idx].astype(np.int32)


def eval_batches(images: np.ndarray, labels: np.ndarray, batch_size: int, dataset: str):
    """Normalised (images, labels) in order, the last batch possibly smaller."""
    for i in range(0, len(images), batch_size):
        yield normalize(images[i : i + batch_size], dataset), tf.constant(labels[i : i + batch_size].astype(np.int32))
