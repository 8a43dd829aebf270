"""CIFAR-10 and CIFAR-100 in the official "python version" layout.

    cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}
    cifar-100-python/{train, test, meta}

Each batch file is a pickle of a dict with `data` (uint8, N x 3072, channel-planar R, G, B, row-major
32x32) and `labels` (`fine_labels` for CIFAR-100). Any N per file is accepted (the real subset used in
tests has 932). Pickles are read with a restricted unpickler. The official archives' md5 sums are
checked when an archive is given or downloaded.
"""

from __future__ import annotations

import hashlib
import pickle
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shared import safe_pickle
from shared.data.arrays import ArraySplit
from shared.errors import MalformedError, UserError
from shared.paths import data_root, ensure_folder, write_failure

# Normalisation constants of the CIFAR-10 training set (as the DSP and BiP code use them).
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN = (0.5071, 0.4866, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)


@dataclass(frozen=True)
class CifarLayout:
    name: str
    folder: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    meta_file: str
    label_key: str
    names_key: str
    url: str
    md5: str
    num_classes: int


LAYOUTS = {
    "cifar10": CifarLayout(
        name="cifar10",
        folder="cifar-10-batches-py",
        train_files=tuple(f"data_batch_{i}" for i in range(1, 6)),
        test_files=("test_batch",),
        meta_file="batches.meta",
        label_key="labels",
        names_key="label_names",
        url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        md5="c58f30108f718f92721af3b95e74349a",
        num_classes=10,
    ),
    "cifar100": CifarLayout(
        name="cifar100",
        folder="cifar-100-python",
        train_files=("train",),
        test_files=("test",),
        meta_file="meta",
        label_key="fine_labels",
        names_key="fine_label_names",
        url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        md5="eb9058c3a382ffc7106e223d42e8a1a1",
        num_classes=100,
    ),
}


def _layout(name: str) -> CifarLayout:
    if name not in LAYOUTS:
        raise UserError(f"unknown CIFAR dataset {name!r}; expected one of {sorted(LAYOUTS)}")
    return LAYOUTS[name]


def _is_layout_folder(path: Path, layout: CifarLayout) -> bool:
    return all((path / f).is_file() for f in layout.train_files + layout.test_files)


def find_cifar_folder(root: str | Path | None, name: str = "cifar10") -> Path:
    """The folder holding the batch files: `root` itself, `root/<official folder>`, or one level deeper.

    `root` defaults to $PRUNING_DATA_DIR. Raises UserError naming what was searched.
    """
    layout = _layout(name)
    base = data_root(root)
    if base is None:
        raise UserError(
            f"no data folder given for {name}: pass --data-dir or set PRUNING_DATA_DIR "
            f"(a folder containing {layout.folder}/; get it with `python -m shared.data {name} --out DIR`)"
        )
    if not base.exists():
        raise UserError(f"data folder {base} does not exist (expected a folder containing {layout.folder}/)")
    candidates = [base, base / layout.folder]
    if base.is_dir():
        candidates += sorted(p / layout.folder for p in base.iterdir() if p.is_dir())
    for cand in candidates:
        if cand.is_dir() and _is_layout_folder(cand, layout):
            return cand
    wanted = ", ".join(layout.train_files + layout.test_files)
    raise UserError(f"no {name} batch files under {base}: expected {layout.folder}/ with {wanted}")


class _BatchUnpickler(safe_pickle.RestrictedUnpickler):
    """The restricted unpickler, plus `bytes`: a protocol-2 pickle of an empty uint8 array (a valid
    batch of 0 images) rebuilds its buffer with `__builtin__.bytes()`."""

    def find_class(self, module: str, name: str):
        if (module, name) in (("__builtin__", "bytes"), ("builtins", "bytes")):
            return bytes
        return super().find_class(module, name)


def _unpickle(path: Path, what: str):
    try:
        with open(path, "rb") as f:
            return _BatchUnpickler(f, encoding="latin1").load()
    except (EOFError, pickle.UnpicklingError, ValueError, TypeError, AttributeError, IndexError) as err:
        raise MalformedError(f"{path}: cannot read {what} (truncated or corrupt?): {err}") from err
    except OSError as err:
        raise MalformedError(f"{path}: cannot read {what}: {err.strerror or err}") from err


def _field_array(path: Path, key: str, value) -> np.ndarray:
    """`value` as a numpy array; a ragged list (rows of different lengths) is a MalformedError."""
    try:
        return np.asarray(value)
    except ValueError as err:
        raise MalformedError(f"{path}: field {key!r} is ragged (its rows have different lengths)") from err


def _labels(path: Path, key: str, value, n_images: int, num_classes: int) -> np.ndarray:
    """The labels as int64 (N,): whole numbers in [0, num_classes), one per image."""
    raw = _field_array(path, key, value)
    if raw.ndim != 1:
        raise MalformedError(
            f"{path}: field {key!r} must be a flat list of {n_images} labels, got an array of shape {raw.shape}"
        )
    if raw.size and raw.dtype.kind not in "iuf":  # strings, objects, booleans
        first = raw.flat[0].item() if hasattr(raw.flat[0], "item") else raw.flat[0]
        raise MalformedError(
            f"{path}: field {key!r} must hold integer labels, got {type(first).__name__} values such as {first!r:.40}"
        )
    if raw.dtype.kind == "f":
        bad = ~np.isfinite(raw) | (raw != np.round(raw))
        if bad.any():
            i = int(np.argmax(bad))
            got = raw[i].item()
            raise MalformedError(f"{path}: field {key!r} must hold whole-number labels, got {got} at index {i}")
    labels = raw.astype(np.int64)
    if labels.shape != (n_images,):
        raise MalformedError(f"{path}: field {key!r} has {labels.size} labels for {n_images} images")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        i = int(np.argmax((labels < 0) | (labels >= num_classes)))
        raise MalformedError(f"{path}: field {key!r}: label {labels[i]} at index {i} is outside [0, {num_classes})")
    return labels


def _read_batch(path: Path, layout: CifarLayout) -> tuple[np.ndarray, np.ndarray]:
    batch = _unpickle(path, "CIFAR batch file")
    if not isinstance(batch, dict):
        raise MalformedError(f"{path}: expected a pickled dict, got {type(batch).__name__}")
    for key in ("data", layout.label_key):
        if key not in batch:
            raise MalformedError(f"{path}: field {key!r} is missing")
    data = _field_array(path, "data", batch["data"])
    if data.size == 0 and data.ndim == 1:  # an empty batch written as an empty list
        data = np.zeros((0, 3072), np.uint8)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise MalformedError(
            f"{path}: field 'data' must be a uint8 array of shape (N, 3072), got {data.dtype} {data.shape}"
        )
    labels = _labels(path, layout.label_key, batch[layout.label_key], len(data), layout.num_classes)
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # planar RGB -> NHWC
    return np.ascontiguousarray(images), labels


def _class_names(folder: Path, layout: CifarLayout) -> tuple[str, ...]:
    """Class names from the meta file; numbers when it is absent. A corrupt meta file is an error."""
    meta = folder / layout.meta_file
    if not meta.is_file():
        return tuple(str(i) for i in range(layout.num_classes))
    obj = _unpickle(meta, "the CIFAR meta file")
    if not isinstance(obj, dict):
        raise MalformedError(f"{meta}: expected a pickled dict, got {type(obj).__name__}")
    names = obj.get(layout.names_key)
    if (
        not isinstance(names, (list, tuple))
        or len(names) != layout.num_classes
        or not all(isinstance(n, (str, bytes)) for n in names)
    ):
        got = f"{type(names).__name__} of length {len(names)}" if hasattr(names, "__len__") else f"{names!r}"
        got = "nothing (the field is missing)" if names is None else got
        raise MalformedError(
            f"{meta}: field {layout.names_key!r} must be a list of {layout.num_classes} class names, got {got:.80}"
        )
    return tuple(n.decode("latin1") if isinstance(n, bytes) else n for n in names)


def load_cifar(root: str | Path | None, name: str = "cifar10", split: str = "train") -> ArraySplit:
    """Read one split ('train' or 'test') of CIFAR-10/100 as uint8 NHWC images and int64 labels."""
    layout = _layout(name)
    if split not in ("train", "test"):
        raise UserError(f"unknown split {split!r}; expected 'train' or 'test'")
    try:
        folder = find_cifar_folder(root, name)
    except UserError:  # CIFAR-10's binary layout (cifar-10-batches-bin, what PocketFlow read) instead
        from shared.data import cifar_bin

        if name != "cifar10" or cifar_bin.find_bin_folder(root) is None:
            raise
        return cifar_bin.load_cifar_bin(root, split)
    files = layout.train_files if split == "train" else layout.test_files
    parts = [_read_batch(folder / f, layout) for f in files]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    return ArraySplit(name, split, images, labels, _class_names(folder, layout), source=str(folder))


# ----------------------------------------------------------------------------------------------------
# Preparation: download, or take an archive / folder the user already has
# ----------------------------------------------------------------------------------------------------


def md5_of(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _extract_archive(archive: Path, layout: CifarLayout, out_dir: Path, expected_md5: str | None) -> Path:
    if expected_md5 is not None:
        got = md5_of(archive)
        if got != expected_md5:
            raise UserError(
                f"{archive}: md5 {got} does not match the official {layout.name} archive ({expected_md5}); "
                "the file is corrupt, truncated or a different archive"
            )
    try:
        with tarfile.open(archive, "r:*") as tar, tempfile.TemporaryDirectory(dir=out_dir) as tmp:
            tar.extractall(tmp, filter="data")
            found = list(Path(tmp).rglob(layout.folder))
            if not found:
                raise UserError(f"{archive}: no {layout.folder}/ folder inside the archive")
            target = out_dir / layout.folder
            if target.exists():
                raise UserError(f"{target} already exists; not overwriting it")
            shutil.move(str(found[0]), target)
    except (tarfile.TarError, EOFError, OSError) as err:
        raise UserError(f"{archive}: cannot extract the archive: {err}") from err
    return target


def prepare_cifar(
    name: str,
    out_dir: str | Path,
    archive: str | Path | None = None,
    source_dir: str | Path | None = None,
    url: str | None = None,
    timeout: float = 30.0,
) -> Path:
    """Put CIFAR-10/100 in the official layout under `out_dir` and check that it reads.

    With `archive` (the official .tar.gz): verify its md5 and extract. With `source_dir` (a folder the
    user already has, in the official layout, any number of images per file): check it and copy it.
    Otherwise download the official archive (fails with a clear message when offline).
    """
    layout = _layout(name)
    out = ensure_folder(Path(out_dir).expanduser(), "output")
    target = out / layout.folder
    if target.is_dir() and _is_layout_folder(target, layout):
        load_cifar(out, name, "test")  # readable?
        return target
    if source_dir is not None:
        folder = find_cifar_folder(source_dir, name)
        load_cifar(folder, name, "test")
        try:
            shutil.copytree(folder, target)
        except OSError as err:  # shutil.Error (one per file) included
            shutil.rmtree(target, ignore_errors=True)
            cause = err if err.errno is not None else OSError(None, f"{len(err.args[0])} file(s) failed: {err}")
            raise write_failure(target, cause) from err
    elif archive is not None:
        archive = Path(archive).expanduser()
        if not archive.is_file():
            raise UserError(f"archive {archive} does not exist")
        _extract_archive(archive, layout, out, layout.md5)
    else:
        url = url or layout.url
        partial = out / (Path(url).name + ".partial")
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp, open(partial, "wb") as f:
                shutil.copyfileobj(resp, f)
        except (urllib.error.URLError, OSError, ValueError) as err:
            partial.unlink(missing_ok=True)
            raise UserError(
                f"cannot download {name} from {url}: {getattr(err, 'reason', err)}. If this machine is "
                f"offline, fetch the archive elsewhere and pass --archive FILE (or --from FOLDER)"
            ) from err
        try:
            _extract_archive(partial, layout, out, layout.md5)
        finally:
            partial.unlink(missing_ok=True)
    load_cifar(out, name, "test")
    return target
