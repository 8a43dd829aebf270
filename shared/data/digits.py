"""The embedded default dataset: scikit-learn's handwritten digits, shaped like CIFAR.

1,797 grey 8x8 images (values 0..16) are scaled to 0..255, enlarged 4x to 32x32 (nearest neighbour)
and repeated over three channels: uint8 (N, 32, 32, 3), 10 classes. The split is fixed: a seeded
permutation (seed 0) puts 1,437 images in 'train' and 360 in 'test'. Needs no download.
"""

from __future__ import annotations

import functools

import numpy as np

from shared.data.arrays import ArraySplit
from shared.errors import UserError

DIGITS_TRAIN = 1437
DIGITS_SEED = 0


@functools.lru_cache(maxsize=1)
def _all_digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits  # ships its data inside the package

    bunch = load_digits()
    grey = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)  # (N, 8, 8)
    big = grey.repeat(4, axis=1).repeat(4, axis=2)  # (N, 32, 32)
    images = np.repeat(big[..., None], 3, axis=3)
    order = np.random.default_rng(DIGITS_SEED).permutation(len(images))
    return np.ascontiguousarray(images[order]), bunch.target[order].astype(np.int64)


def load_digits_cifar(split: str = "train") -> ArraySplit:
    images, labels = _all_digits()
    if split == "train":
        sel = slice(0, DIGITS_TRAIN)
    elif split == "test":
        sel = slice(DIGITS_TRAIN, None)
    else:
        raise UserError(f"unknown split {split!r}; expected 'train' or 'test'")
    return ArraySplit(
        "digits",
        split,
        images[sel],
        labels[sel],
        tuple(str(i) for i in range(10)),
        source="sklearn.datasets.load_digits",
    )
