"""Where data and checkpoints live: an explicit option first, then an environment variable.

Package code never guesses machine paths. `PRUNING_DATA_DIR` names a folder that holds datasets
(e.g. a `cifar-10-batches-py/` folder, or sub-folders that contain one); `PRUNING_CHECKPOINT_DIR`
names a folder of released checkpoints (e.g. `dsp/resnet56_g4.pt`).
"""

from __future__ import annotations

import os
from pathlib import Path

DATA_ENV = "PRUNING_DATA_DIR"
CHECKPOINT_ENV = "PRUNING_CHECKPOINT_DIR"


def data_root(option: str | os.PathLike | None = None) -> Path | None:
    """The data folder given on the command line, else $PRUNING_DATA_DIR, else None."""
    if option:
        return Path(option).expanduser()
    env = os.environ.get(DATA_ENV)
    return Path(env).expanduser() if env else None


def checkpoint_root(option: str | os.PathLike | None = None) -> Path | None:
    """The checkpoint folder given on the command line, else $PRUNING_CHECKPOINT_DIR, else None."""
    if option:
        return Path(option).expanduser()
    env = os.environ.get(CHECKPOINT_ENV)
    return Path(env).expanduser() if env else None


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` through a temporary file and a rename, so readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))
