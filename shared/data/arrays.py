"""The in-memory form every CIFAR-shaped reader returns."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ArraySplit:
    """One split of an image-classification dataset held in memory.

    images: uint8 array (N, H, W, 3); labels: int64 array (N,); classes: class names in label order.
    """

    name: str
    split: str
    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]
    source: str = ""

    def __post_init__(self):
        if self.images.dtype != np.uint8 or self.images.ndim != 4 or self.images.shape[-1] != 3:
            raise ValueError(f"images must be uint8 (N, H, W, 3), got {self.images.dtype} {self.images.shape}")
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError(f"labels shape {self.labels.shape} does not match {self.images.shape[0]} images")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def fingerprint(self) -> str:
        """sha256 of images and labels (first 16 hex digits): identifies the exact data a run saw."""
        h = hashlib.sha256()
        h.update(np.ascontiguousarray(self.images).tobytes())
        h.update(self.labels.astype(np.int64).tobytes())
        return h.hexdigest()[:16]

    def subset(self, n: int) -> ArraySplit:
        """The first n examples (for smoke runs)."""
        return ArraySplit(self.name, self.split, self.images[:n], self.labels[:n], self.classes, self.source)

    def identity(self) -> dict:
        """What a run record stores about its data."""
        return {
            "name": self.name,
            "split": self.split,
            "n": len(self),
            "source": self.source,
            "sha256_16": self.fingerprint(),
        }
