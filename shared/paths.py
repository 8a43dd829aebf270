"""Where data and checkpoints live: an explicit option first, then an environment variable.

Package code never guesses machine paths. `PRUNING_DATA_DIR` names a folder that holds datasets
(e.g. a `cifar-10-batches-py/` folder, or sub-folders that contain one); `PRUNING_CHECKPOINT_DIR`
names a folder of released checkpoints (e.g. `dsp/resnet56_g4.pt`).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from shared.errors import UserError, WriteFailed

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


def check_writable(folder: str | os.PathLike, what: str = "") -> Path:
    """Prove that a file can be written in `folder` (before long work whose result would be lost), or
    raise WriteFailed naming the folder and the cause. Nothing is created: a folder that does not exist
    yet is probed in its nearest existing parent (a file there instead of a folder is refused)."""
    folder = Path(folder)
    base = next((p for p in (folder, *folder.parents) if p.exists()), Path("."))
    if not base.is_dir():
        name = f"{what} folder" if what else "folder"
        raise WriteFailed(f"cannot create {name} {folder}: {base} is a file, not a folder")
    probe = base / f".write-test{os.getpid()}"
    try:
        with open(probe, "wb") as f:
            f.write(b"0")
            f.flush()
            os.fsync(f.fileno())
    except OSError as err:
        raise write_failure(folder, err, f"{what} folder".strip() or "in folder") from err
    finally:
        probe.unlink(missing_ok=True)
    return folder


LOCK_NAME = ".lock"


class FolderBusy(UserError):
    """Another process holds the lock of a run folder."""


class RunFolderLock:
    """An exclusive lock of a run folder: `fcntl.flock` on `<folder>/.lock`, held while the run writes.

    Two runs in one folder at once corrupt it (both save checkpoints, both rename results into place),
    so the second is refused with a message naming the process that holds the folder. The lock file
    holds that process's id, host and command line. The lock goes when the holder's file is closed:
    at `release()`, at the end of the `with` block, or when the process dies (even by SIGKILL), so a
    crashed run never leaves a stale lock. A folder that the run created and left empty is removed
    again on release, so that a refused or failed command leaves nothing behind.

        with RunFolderLock(stage_folder, "stage 1"):
            ...  # write in stage_folder

    `name` gives the lock file another name, for runs that share a folder but not their files (DSP's
    stages, one job per GPU in one save folder, each lock `.<output>.lock`); with `remove=True` the
    lock file is deleted on release (a waiting `acquire` notices the swap and retries).
    """

    def __init__(self, folder: str | os.PathLike, what: str = "run", name: str = LOCK_NAME, remove: bool = False):
        self.folder, self.what, self.remove = Path(folder), what, remove
        self.path = self.folder / name
        self._fd: int | None = None
        self._created = False

    def acquire(self) -> RunFolderLock:
        import fcntl  # POSIX only; imported here so that the module loads elsewhere

        self._created = not self.folder.exists()
        ensure_folder(self.folder, self.what)
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as err:
                self._remove_if_empty()
                raise write_failure(self.path, err, f"the lock file of {self.what}") from err
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(fd)
                os.close(fd)
                raise FolderBusy(
                    f"{self.folder} is in use by {holder} ({self.what}); two runs in one folder corrupt "
                    f"it: wait for that one to end, or give this run another folder"
                ) from None
            # the holder before us may have removed the file between our open and our lock: retry then
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        holder = _holder_text().encode("utf-8")
        if os.pread(fd, len(holder) + 1, 0) != holder:  # unchanged when this process held it before
            os.ftruncate(fd, 0)
            os.pwrite(fd, holder, 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            if self._created:  # a folder this run made and left empty: remove it (still locked)
                self._remove_if_empty()
            if self.remove:
                self.path.unlink(missing_ok=True)
        finally:
            os.close(fd)

    def _remove_if_empty(self) -> None:
        try:
            if self._created and {p.name for p in self.folder.iterdir()} <= {self.path.name}:
                self.path.unlink(missing_ok=True)
                self.folder.rmdir()
        except OSError:
            pass

    def __enter__(self) -> RunFolderLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _holder_text() -> str:
    import shlex
    import socket
    import sys

    return f"process {os.getpid()} on {socket.gethostname()}: {shlex.join(sys.argv)}\n"


def _read_holder(fd: int) -> str:
    try:
        text = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
    except OSError:
        text = ""
    return text or "another process (it has not written its id yet)"
