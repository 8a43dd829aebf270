"""Image datasets in BiP's LMDB format (the Lyken17 "Efficient-PyTorch" folder2lmdb layout, with pickle).

On disk (what BiP's `datasets/lmdb_dataset.py` writes and reads, byte for byte):

    <name>.lmdb                 a single-file LMDB (`subdir=False`), default (unnamed) sub-database
      b'0', b'1', ..., b'N-1'   key: the ASCII decimal sample index, no zero padding
                                value: pickle.dumps((raw_file_bytes, int_label), protocol=4)
      b'__keys__'               pickle of the list of byte keys in index order [b'0', b'1', ...]
      b'__len__'                pickle of the int N

`raw_file_bytes` is the undecoded original image file (JPEG for ImageNet); samples are in torchvision
ImageFolder order (see `shared.data.imagenet.imagefolder_samples`). LMDB's own key order is
lexicographic (b'10' < b'2'); readers use `__keys__` for index order.

Differences from BiP's code, none of which changes the file format:
- the writer builds `<out>.tmp<pid>` and renames it at the end, and refuses an existing output;
- the reader unpickles with `shared.safe_pickle` (a value that names a Python callable is refused);
- the reader checks the file size against the LMDB header before reading, because reading a truncated
  LMDB through its memory map kills the process with SIGBUS instead of raising;
- readers of the same file in one process share one environment (recent py-lmdb refuses a second open).
Values are still pickles: only read LMDB files from sources you trust.
"""

from __future__ import annotations

import errno
import io
import numbers
import os
import pickle
from collections.abc import Callable, Iterable
from pathlib import Path

import lmdb
import numpy as np

from shared import safe_pickle
from shared.errors import MalformedError, UserError
from shared.paths import ensure_folder, write_failure

KEYS_KEY = b"__keys__"
LEN_KEY = b"__len__"
PICKLE_PROTOCOL = 4  # what BiP's files show (b'\x80\x04')
COMMIT_EVERY = 5000  # BiP's write_frequency
DEFAULT_MAP_SIZE = 1 << 40  # 1 TiB of address space; the file only grows as written (BiP: 2 TiB)


def index_key(i: int) -> bytes:
    """The LMDB key of sample `i`: b'0', b'1', ..., b'10' (ASCII decimal, no padding)."""
    return str(i).encode("ascii")


def encode_record(raw: bytes, label: int) -> bytes:
    return pickle.dumps((raw, label), protocol=PICKLE_PROTOCOL)


# ----------------------------------------------------------------------------------------------------
# Writer
# ----------------------------------------------------------------------------------------------------


def _raw_bytes(item) -> bytes:
    if isinstance(item, (bytes, bytearray, memoryview)):
        return bytes(item)
    path = Path(item)
    try:
        return path.read_bytes()
    except OSError as err:
        raise UserError(f"cannot read image file {path}: {err.strerror or err}") from err


def _check_label(label, where) -> int:
    if isinstance(label, bool) or not isinstance(label, numbers.Integral) or label < 0:
        raise UserError(f"{where}: label must be a non-negative int, got {label!r}")
    return int(label)


def write_lmdb(
    samples: Iterable[tuple[str | os.PathLike | bytes, int]],
    out_path: str | os.PathLike,
    *,
    commit_every: int = COMMIT_EVERY,
    map_size: int = DEFAULT_MAP_SIZE,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Write (image file or its bytes, label) pairs to a BiP-format single-file LMDB; return the count.

    Builds `<out_path>.tmp<pid>` next to the output and renames it when complete, so `out_path` is
    either absent or finished. Refuses to overwrite an existing `out_path`. `progress(n)` is called after
    each commit with the number of records written so far.
    """
    out = Path(out_path).expanduser()
    if out.exists():
        raise UserError(f"{out} already exists; not overwriting it (remove it or choose another --out)")
    if commit_every < 1:
        raise UserError(f"commit_every must be >= 1, got {commit_every}")
    ensure_folder(out.parent, "output")
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    tmp_lock = Path(f"{tmp}-lock")
    for leftover in (tmp, tmp_lock):
        leftover.unlink(missing_ok=True)  # our own pid's leftovers from an earlier crash
    n = 0
    env = None
    try:
        env = lmdb.open(str(tmp), subdir=False, map_size=map_size, readonly=False, meminit=False, map_async=True)
        txn = env.begin(write=True)
        for item, label in samples:
            where = item if not isinstance(item, (bytes, bytearray, memoryview)) else f"sample {n}"
            txn.put(index_key(n), encode_record(_raw_bytes(item), _check_label(label, where)))
            n += 1
            if n % commit_every == 0:
                txn.commit()
                if progress is not None:
                    progress(n)
                txn = env.begin(write=True)
        txn.commit()
        with env.begin(write=True) as txn:
            txn.put(KEYS_KEY, pickle.dumps([index_key(i) for i in range(n)], protocol=PICKLE_PROTOCOL))
            txn.put(LEN_KEY, pickle.dumps(n, protocol=PICKLE_PROTOCOL))
        env.sync(True)
        env.close()
        if out.exists():  # appeared while we were writing (a long ImageNet pack)
            raise UserError(f"{out} appeared while writing; not overwriting it")
        os.replace(tmp, out)
    except lmdb.MapFullError as err:
        raise UserError(f"{out}: the LMDB map is full after {n} records; pass a larger map_size") from err
    except lmdb.Error as err:  # py-lmdb's errors carry the C library's errno text, not an errno
        raise write_failure(out, _lmdb_os_error(err), "LMDB") from err
    except OSError as err:
        raise write_failure(out, err, "LMDB") from err
    finally:
        if env is not None:
            env.close()
        tmp.unlink(missing_ok=True)
        tmp_lock.unlink(missing_ok=True)
    if progress is not None:
        progress(n)
    return n


def _lmdb_os_error(err: lmdb.Error) -> OSError:
    """py-lmdb's error as an OSError with the errno its message names (for `write_failure`)."""
    text = str(err)
    for code, words in (
        (errno.ENOSPC, "No space left"),
        (errno.EROFS, "Read-only file system"),
        (errno.EACCES, "Permission denied"),
        (errno.ENOTDIR, "Not a directory"),
    ):
        if words in text:
            return OSError(code, text)
    return OSError(None, text)


# ----------------------------------------------------------------------------------------------------
# Reader
# ----------------------------------------------------------------------------------------------------


def _data_file(path: Path) -> Path:
    return path / "data.mdb" if path.is_dir() else path


def _open_readonly(path: Path) -> lmdb.Environment:
    """Open read-only as BiP's reader does, after checking the file is a complete LMDB."""
    try:
        env = lmdb.open(str(path), subdir=path.is_dir(), readonly=True, lock=False, readahead=False, meminit=False)
    except lmdb.Error as err:
        if "already open" in str(err):
            raise UserError(f"{path} is already open in this process by other code; close it first") from err
        raise MalformedError(f"{path}: not an LMDB file (or truncated): {err}") from err
    needed = (env.info()["last_pgno"] + 1) * env.stat()["psize"]
    size = _data_file(path).stat().st_size
    if size < needed:
        env.close()
        raise MalformedError(f"{path}: truncated LMDB ({size} bytes, its header needs {needed})")
    return env


# py-lmdb refuses to open one environment twice in a process (BiP's train and val loaders both read
# train.lmdb), so datasets on the same file share one handle, counted. A forked DataLoader worker inherits
# the handle and reads through it, as BiP's workers do; a spawned worker opens its own.
_ENVS: dict[tuple[int, int], list] = {}  # (st_dev, st_ino) of the data file -> [env, users]


def _acquire_env(path: Path) -> tuple[lmdb.Environment, tuple[int, int]]:
    if not path.exists():
        raise UserError(f"LMDB {path} does not exist")
    st = _data_file(path).stat() if _data_file(path).exists() else path.stat()
    ident = (st.st_dev, st.st_ino)
    if ident not in _ENVS:
        _ENVS[ident] = [_open_readonly(path), 0]
    _ENVS[ident][1] += 1
    return _ENVS[ident][0], ident


def _release_env(ident: tuple[int, int]) -> None:
    entry = _ENVS.get(ident)
    if entry is not None:
        entry[1] -= 1
        if entry[1] <= 0:
            del _ENVS[ident]
            entry[0].close()


def _unpickle(data: bytes, path: Path, what: str):
    try:
        return safe_pickle.loads(data)
    except safe_pickle.ForbiddenPickleError as err:
        raise MalformedError(f"{path}: {what}: {err}") from err
    except Exception as err:  # any other broken pickle: EOFError, UnpicklingError, ValueError, ...
        raise MalformedError(f"{path}: {what} is not a readable pickle: {err}") from err


class LmdbImageDataset:
    """Read-only access to a BiP-format LMDB: `ds[i]` is (raw image file bytes, int label).

    `path` is the single `.lmdb` file (or an LMDB directory holding `data.mdb`). Length comes from
    `__len__`, the index order from `__keys__`. Decoding images is left to the caller (`decode_rgb`).
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path).expanduser()
        self._env, self._ident = None, None
        try:
            self._length, self._keys = self._read_meta()
        except BaseException:
            self.close()
            raise

    def _read_meta(self) -> tuple[int, list[bytes]]:
        with self._txn() as txn:
            raw_len, raw_keys = self._get(txn, LEN_KEY), self._get(txn, KEYS_KEY)
        if raw_len is None:
            raise MalformedError(f"{self.path}: no __len__ key; not a BiP-format LMDB (folder2lmdb)")
        if raw_keys is None:
            raise MalformedError(f"{self.path}: no __keys__ key; not a BiP-format LMDB (folder2lmdb)")
        length = _unpickle(raw_len, self.path, "__len__")
        keys = _unpickle(raw_keys, self.path, "__keys__")
        if isinstance(length, bool) or not isinstance(length, int) or length < 0:
            raise MalformedError(f"{self.path}: __len__ must be a non-negative int, got {length!r}")
        if not isinstance(keys, list) or not all(isinstance(k, bytes) for k in keys):
            raise MalformedError(f"{self.path}: __keys__ must be a list of byte strings")
        if len(keys) != length:
            raise MalformedError(f"{self.path}: __keys__ has {len(keys)} keys but __len__ says {length}")
        return length, keys

    def _get(self, txn, key: bytes) -> bytes | None:
        try:
            return txn.get(key)
        except lmdb.Error as err:  # e.g. CorruptedError: a damaged page of a file of the right size
            raise MalformedError(f"{self.path}: corrupt LMDB, cannot read key {key!r}: {err}") from err

    def _txn(self):
        if self._env is None:
            self._env, self._ident = _acquire_env(self.path)
        return self._env.begin(write=False)

    def __getstate__(self):  # picklable for spawned DataLoader workers: they open their own handle
        return {"path": self.path, "_length": self._length, "_keys": self._keys}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._env, self._ident = None, None

    def __len__(self) -> int:
        return self._length

    def key(self, i: int) -> bytes:
        if not -self._length <= i < self._length:
            raise IndexError(f"index {i} out of range for {self._length} samples")
        return self._keys[i]

    def __getitem__(self, i: int) -> tuple[bytes, int]:
        key = self.key(i)
        with self._txn() as txn:
            value = self._get(txn, key)
        if value is None:
            raise MalformedError(f"{self.path}: key {key!r} (sample {i}) listed in __keys__ is missing")
        record = _unpickle(value, self.path, f"value of key {key!r}")
        if (
            not isinstance(record, tuple)
            or len(record) != 2
            or not isinstance(record[0], bytes)
            or isinstance(record[1], bool)
            or not isinstance(record[1], numbers.Integral)
        ):
            raise MalformedError(f"{self.path}: value of key {key!r} must be a pickled (bytes, int) pair")
        return record[0], int(record[1])

    def labels(self, indices: Iterable[int] | None = None) -> np.ndarray:
        """Labels of the given samples (all of them by default; that reads every value)."""
        indices = range(self._length) if indices is None else indices
        return np.array([self[i][1] for i in indices], dtype=np.int64)

    def close(self) -> None:
        if self._ident is not None:
            _release_env(self._ident)
        self._env, self._ident = None, None

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def decode_rgb(data: bytes, what: str = "image") -> np.ndarray:
    """Decode image file bytes with Pillow, convert to RGB: uint8 (H, W, 3)."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            return np.asarray(img.convert("RGB"), dtype=np.uint8)
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise MalformedError(f"{what}: cannot decode image: {err}") from err
