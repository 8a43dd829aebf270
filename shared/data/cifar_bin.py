"""CIFAR-10 in the official "binary version" layout, the one PocketFlow's input pipeline read.

    cifar-10-batches-bin/{data_batch_1.bin .. data_batch_5.bin, test_batch.bin, batches.meta.txt}

Each file is a sequence of 3073-byte records: one label byte (0..9), then 3072 pixel bytes, channel-planar
(1024 red, 1024 green, 1024 blue), each plane row-major 32x32. Any number of records per file is
accepted; a file whose size is not a multiple of 3073 bytes is truncated or not a CIFAR-10 binary file.
`shared.data.load_cifar` falls back to this layout when the python layout is absent.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from shared.data.arrays import ArraySplit
from shared.errors import MalformedError, UserError
from shared.paths import data_root

FOLDER = "cifar-10-batches-bin"
TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
TEST_FILES = ("test_batch.bin",)
META_FILE = "batches.meta.txt"
RECORD = 1 + 3 * 32 * 32


def _is_bin_folder(path: Path) -> bool:
    return all((path / f).is_file() for f in TRAIN_FILES + TEST_FILES)


def find_bin_folder(root: str | Path | None) -> Path | None:
    """The folder holding the .bin files (`root`, `root/cifar-10-batches-bin`, or one level deeper), or None."""
    base = data_root(root)
    if base is None or not base.is_dir():
        return None
    candidates = [base, base / FOLDER] + sorted(p / FOLDER for p in base.iterdir() if p.is_dir())
    return next((c for c in candidates if c.is_dir() and _is_bin_folder(c)), None)


def read_bin(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 NHWC images, int64 labels) of one binary batch file."""
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size % RECORD:
        raise MalformedError(
            f"{path}: {raw.size} bytes is not a whole number of {RECORD}-byte CIFAR-10 records (truncated?)"
        )
    records = raw.reshape(-1, RECORD)
    labels = records[:, 0].astype(np.int64)
    if labels.size and labels.max() >= 10:
        i = int(np.argmax(labels >= 10))
        raise MalformedError(f"{path}: record {i} has label {labels[i]}, expected 0..9")
    images = records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


def _class_names(folder: Path) -> tuple[str, ...]:
    meta = folder / META_FILE
    if meta.is_file():
        names = [n.strip() for n in meta.read_text(errors="replace").splitlines() if n.strip()]
        if len(names) == 10:
            return tuple(names)
    return tuple(str(i) for i in range(10))


def load_cifar_bin(root: str | Path | None, split: str = "train") -> ArraySplit:
    if split not in ("train", "test"):
        raise UserError(f"unknown split {split!r}; expected 'train' or 'test'")
    folder = find_bin_folder(root)
    if folder is None:
        raise UserError(f"no CIFAR-10 binary files under {root}: expected {FOLDER}/ with {', '.join(TRAIN_FILES)}")
    parts = [read_bin(folder / f) for f in (TRAIN_FILES if split == "train" else TEST_FILES)]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    return ArraySplit("cifar10", split, images, labels, _class_names(folder), source=str(folder))
