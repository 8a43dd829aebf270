"""Where data and checkpoints live: an explicit option first, then an environment variable.

Package code never guesses machine paths. `PRUNING_DATA_DIR` names a folder that holds datasets
(e.g. a `cifar-10-batches-py/` folder, or sub-folders that contain one); `PRUNING_CHECKPOINT_DIR`
names a folder of released checkpoints (e.g. `dsp/resnet56_g4.pt`).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from shared.errors import WriteFailed

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


# errno -> what the user should read (the causes of a failed write they can act on)
_WRITE_CAUSES = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "the disk quota is exhausted",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied (the folder is read-only for this user)",
    errno.EPERM: "operation not permitted",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EEXIST: "a part of the path is a file, not a folder",
    errno.EISDIR: "it is a folder",
    errno.ENAMETOOLONG: "the name is too long",
}


def write_failure(path: str | os.PathLike, err: OSError, what: str = "") -> WriteFailed:
    """A WriteFailed naming `path` and the cause of `err` (read-only, no space left, ...)."""
    cause = _WRITE_CAUSES.get(err.errno) or err.strerror or str(err)
    return WriteFailed(f"cannot write {what + ' ' if what else ''}{path}: {cause}")


def ensure_folder(folder: str | os.PathLike, what: str = "") -> Path:
    """Create `folder` (and its parents) or raise WriteFailed naming it and the cause."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        if err.errno in (errno.EEXIST, errno.ENOTDIR):  # a file where a folder should be
            blocker = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), None)
            if blocker is not None:
                name = f"{what} folder" if what else "folder"
                raise WriteFailed(f"cannot create {name} {folder}: {blocker} is a file, not a folder") from err
        raise write_failure(folder, err, f"{what} folder".strip()) from err
    return folder


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` through a temporary file and a rename, so readers never see half a file.

    A failed write (read-only folder, no space left) raises WriteFailed naming the path and the cause;
    the temporary file is removed and `path` is left as it was.
    """
    path = Path(path)
    ensure_folder(path.parent)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise write_failure(path, err) from err
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))
