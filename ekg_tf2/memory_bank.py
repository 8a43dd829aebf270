"""The memory bank (Eq. 10; research/ekg.md 1.8): the knowledge of interim sub-networks, stored once.

Teachers: the search history without its final entry (the pruned network itself), sorted by D^val CE
loss; K = 5 targets at evenly spaced losses min, min + D, ..., min + (K-1) D with D = (max - min) / K,
and for each target the unused entry with the nearest loss. Teacher 0 is the lowest-loss one.

M_k = the logits of teacher k on the whole training set, unaugmented (normalised only), in dataset
order, batches of 256, BN batch statistics, with the teacher's masks loaded into the gates. Stored as
`<train_path>/<DATASET>_knowledge.npy`, float32 [N, classes, K], written chunk by chunk into a
memory-mapped .npy (so an ImageNet bank, ~25 GB for ResNet-50, never has to fit in RAM) and renamed
into place when complete. The data are read once: each batch goes through every teacher in turn.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ekg_tf2 import data
from ekg_tf2.search import EKGSearch
from shared.errors import UserError

NUM_TEACHER = 5


def select_teachers(losses: list[float], num_teacher: int = NUM_TEACHER) -> list[int]:
    """Indices (into `losses`, the history without the final network) of the teachers, teacher 0 first."""
    losses = np.asarray(losses, np.float64)
    if len(losses) == 0:
        raise UserError("the search history has no interim sub-network to take teachers from")
    k = min(num_teacher, len(losses))
    lo, hi = float(losses.min()), float(losses.max())
    targets = lo + (hi - lo) / k * np.arange(k)
    free = list(range(len(losses)))
    chosen = []
    for t in targets:
        j = min(free, key=lambda i: (abs(losses[i] - t), i))
        chosen.append(j)
        free.remove(j)
    return chosen


def bank_path(train_path: str | Path, dataset: str) -> Path:
    return Path(train_path) / f"{dataset}_knowledge.npy"


def build_memory_bank(
    search: EKGSearch,
    images: np.ndarray,
    dataset: str,
    path: str | Path,
    teachers: list[int],
    batch_size: int = 256,
    log: Callable[[str], None] = print,
) -> Path:
    """Write the teachers' logits on `images` (uint8, dataset order) to `path` (.npy, memory-mapped)."""
    batches = (data.normalize(images[i : i + batch_size], dataset) for i in range(0, len(images), batch_size))
    return write_memory_bank(search, batches, len(images), path, teachers, log)


def write_memory_bank(
    search: EKGSearch, batches, n: int, path: str | Path, teachers: list[int], log: Callable[[str], None] = print
) -> Path:
    """Write the teachers' logits on `batches` (normalised images of the n training samples, in order) to
    `path`: one pass over the data, every teacher's masks applied to each batch in turn, each chunk of rows
    written into the memory-mapped .npy as it is computed (an ImageNet bank never has to fit in RAM)."""
    path = Path(path)
    model = search.model
    forward = search.forward  # the search's compiled passes: no second tracing
    k = len(teachers)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    path.parent.mkdir(parents=True, exist_ok=True)
    bank = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, model.num_classes, k))
    saved = search.history[-1]
    try:
        i = 0
        for x in batches:
            b = int(x.shape[0])
            for j, t in enumerate(teachers):
                search.apply_mask_state(search.history[t])
                bank[i : i + b, :, j] = forward.logits(x).numpy()
            i += b
        if i != n:
            raise UserError(f"memory bank: {i} images arrived, expected {n}")
        bank.flush()
        del bank
        os.replace(tmp, path)
        for j, t in enumerate(teachers):
            log(f"memory bank: teacher {j} = history entry {t} (val loss {search.history[t]['loss']:.4f})")
    finally:
        search.apply_mask_state(saved)
        if tmp.exists():
            tmp.unlink()
    return path


def open_bank(path: str | Path, n: int, num_classes: int) -> np.ndarray:
    """The memory bank, memory-mapped read-only; its shape checked against the training set."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"memory bank {path} not found: run the search stage (python -m ekg_tf2.pruning) first")
    bank = np.load(path, mmap_mode="r", allow_pickle=False)
    if bank.ndim != 3 or bank.shape[:2] != (n, num_classes):
        raise UserError(f"memory bank {path} has shape {bank.shape}, expected ({n}, {num_classes}, K)")
    return bank
