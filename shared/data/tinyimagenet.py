"""TinyImageNet from the official `tiny-imagenet-200` folder, with a deterministic version of BiP's split.

Official layout (from tiny-imagenet-200.zip), read as is and never modified:

    tiny-imagenet-200/
      wnids.txt                      the 200 class ids (wnids), one per line
      train/<wnid>/images/<wnid>_<k>.JPEG   500 per class (64x64; a few are greyscale)
      train/<wnid>/<wnid>_boxes.txt  (ignored)
      val/images/val_<k>.JPEG        10,000 images, 50 per class
      val/val_annotations.txt        tab-separated: file, wnid, x_min, y_min, x_max, y_max
      test/images/test_<k>.JPEG      unlabeled (ignored)

Labels are the index of the wnid in sorted order, i.e. torchvision ImageFolder order over `train/`
(the sub-folder names must match wnids.txt when that file is present).

Splits:
- 'train'   : every train image, in ImageFolder order (`shared.data.imagenet.imagefolder_samples`).
- 'val-all' : all 50 official val images per class.
- 'val'     : the first 25 official val images of each class;
- 'test'    : the remaining 25 (BiP reports test accuracy on these 5,000 images).
  "First" means: each class's val images sorted by file name with a numeric-aware key, so
  val_2 < val_10 < val_100 (the integer runs compare as numbers). BiP's code took the first 25 in
  filesystem `glob` order, which differs between machines; this sorted rule is our documented,
  reproducible replacement. Val/test/val-all samples come class by class (label order), each class in
  that numeric file order. A class with fewer than 50 val images is an error for 'val'/'test'.

BiP moved the val images into `val/<wnid>/` and `test/<wnid>/` in place and renamed `test/`; here the
split is computed from the annotations and nothing in the user's folder is written. A folder already
rewritten by BiP's code is recognised and refused with a message.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from shared.data.arrays import ArraySplit
from shared.data.imagenet import imagefolder_samples, is_image_file
from shared.data.lmdb_store import decode_rgb, write_lmdb
from shared.errors import MalformedError, UserError
from shared.paths import data_root

FOLDER = "tiny-imagenet-200"
SPLITS = ("train", "val", "test", "val-all")
VAL_PER_CLASS = 25  # BiP: first 25 per class -> val, the rest -> test
VAL_IMAGES_PER_CLASS = 50  # the official val set
IMAGE_SIZE = (64, 64)

Samples = list[tuple[Path, int]]


def numeric_key(name: str) -> tuple:
    """Sort key comparing digit runs as integers: 'val_2.JPEG' < 'val_10.JPEG'. Ties broken by the name."""
    parts = re.split(r"(\d+)", name, flags=re.ASCII)  # text, digits, text, ... (same types line up)
    return tuple(int(p) if i % 2 else p for i, p in enumerate(parts)), name


def _is_layout(path: Path) -> bool:
    return (path / "train").is_dir() and (path / "val").is_dir()


def find_tinyimagenet_folder(root: str | os.PathLike | None = None) -> Path:
    """The `tiny-imagenet-200` folder: `root` itself or `root/tiny-imagenet-200`.

    `root` defaults to $PRUNING_DATA_DIR. A folder already rewritten by BiP's code is refused.
    """
    base = data_root(root)
    if base is None:
        raise UserError(
            f"no data folder given for TinyImageNet: pass --root or set PRUNING_DATA_DIR "
            f"(the {FOLDER}/ folder from the official zip, or its parent)"
        )
    if not base.is_dir():
        raise UserError(f"TinyImageNet folder {base} does not exist (expected the {FOLDER}/ folder)")
    for cand in (base, base / FOLDER):
        if _is_layout(cand):
            _refuse_bip_rewritten(cand)
            return cand
    raise UserError(f"{base}: not a {FOLDER} folder (expected train/ and val/ in it or in {base / FOLDER})")


def _refuse_bip_rewritten(folder: Path) -> None:
    val = folder / "val"
    rewritten = (folder / "test_original").exists() or (
        not (val / "images").is_dir() and any(p.is_dir() for p in val.iterdir())
    )
    if rewritten:
        raise UserError(
            f"{folder} was rewritten in place by BiP's code (val/<wnid>/ folders, test_original/); "
            f"extract a fresh {FOLDER} from the official zip"
        )


def tinyimagenet_classes(folder: Path) -> list[str]:
    """The wnids in label order: sorted names of the `train/` sub-folders, checked against wnids.txt."""
    train = folder / "train"
    classes = sorted(e.name for e in os.scandir(train) if e.is_dir())
    if not classes:
        raise UserError(f"{train}: no class folders (expected train/<wnid>/images/*.JPEG)")
    wnids_file = folder / "wnids.txt"
    if wnids_file.is_file():
        wnids = sorted({w.strip() for w in wnids_file.read_text(encoding="utf-8").splitlines() if w.strip()})
        if wnids != classes:
            lacking, extra = sorted(set(wnids) - set(classes)), sorted(set(classes) - set(wnids))
            raise MalformedError(
                f"{train}: class folders do not match {wnids_file} "
                f"(no folder for: {lacking[:5] or 'none'}; not in wnids.txt: {extra[:5] or 'none'})"
            )
    return classes


def _read_val_annotations(folder: Path, classes: Sequence[str]) -> dict[str, list[str]]:
    """{wnid: [val file names, numeric order]} from val/val_annotations.txt, checked against val/images."""
    images, ann = folder / "val" / "images", folder / "val" / "val_annotations.txt"
    if not ann.is_file():
        raise UserError(f"{ann} does not exist (expected the official tab-separated val annotations)")
    if not images.is_dir():
        raise UserError(f"{images} does not exist (expected the official val/images/*.JPEG)")
    present = {name for name in os.listdir(images) if is_image_file(name)}
    known = set(classes)
    by_class: dict[str, list[str]] = {w: [] for w in classes}
    seen: set[str] = set()
    for lineno, line in enumerate(ann.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("\t") if "\t" in line else line.split()
        if len(fields) < 2:
            raise MalformedError(f"{ann}:{lineno}: expected 'file<TAB>wnid<TAB>4 box ints', got {line!r}")
        name, wnid = fields[0].strip(), fields[1].strip()
        if os.path.basename(name) != name or name in ("", ".", ".."):
            raise MalformedError(f"{ann}:{lineno}: {name!r} is not a plain file name")
        if wnid not in known:
            raise MalformedError(f"{ann}:{lineno}: unknown wnid {wnid!r} (not a train/ class folder)")
        if name not in present:
            raise MalformedError(f"{ann}:{lineno}: {images / name} does not exist")
        if name in seen:
            raise MalformedError(f"{ann}:{lineno}: {name} is annotated twice")
        seen.add(name)
        by_class[wnid].append(name)
    unlisted = sorted(present - seen, key=numeric_key)
    if unlisted:
        raise MalformedError(f"{images}: {len(unlisted)} image(s) not in {ann.name}, e.g. {unlisted[0]}")
    return {w: sorted(names, key=numeric_key) for w, names in by_class.items()}


def _val_samples(folder: Path, classes: list[str], split: str) -> Samples:
    by_class = _read_val_annotations(folder, classes)
    if split in ("val", "test"):
        short = [f"{w} ({len(by_class[w])})" for w in classes if len(by_class[w]) < VAL_IMAGES_PER_CLASS]
        if short:
            raise MalformedError(
                f"{folder / 'val'}: the 25/25 val/test split needs {VAL_IMAGES_PER_CLASS} val images per "
                f"class; "
                f"{len(short)} class(es) have fewer: {', '.join(short[:5])}"
            )
    images = folder / "val" / "images"
    samples: Samples = []
    for label, wnid in enumerate(classes):
        names = by_class[wnid]
        if split == "val":
            names = names[:VAL_PER_CLASS]
        elif split == "test":
            names = names[VAL_PER_CLASS:]
        samples.extend((images / n, label) for n in names)
    return samples


def tinyimagenet_samples(root: str | os.PathLike | None, split: str) -> tuple[Samples, list[str]]:
    """[(image path, label)] for 'train', 'val', 'test' or 'val-all', and the wnids in label order."""
    if split not in SPLITS:
        raise UserError(f"unknown TinyImageNet split {split!r}; expected one of {', '.join(SPLITS)}")
    folder = find_tinyimagenet_folder(root)
    classes = tinyimagenet_classes(folder)
    if split == "train":
        samples, _ = imagefolder_samples(folder / "train", expected_classes=classes)
        return samples, classes
    return _val_samples(folder, classes, split), classes


def decode_images(paths: Sequence[Path], size: tuple[int, int] = IMAGE_SIZE) -> np.ndarray:
    """Decode image files to one uint8 (N, H, W, 3) array (RGB); every image must be `size` (H, W)."""
    out = np.empty((len(paths), size[0], size[1], 3), dtype=np.uint8)
    for i, path in enumerate(paths):
        img = decode_rgb(Path(path).read_bytes(), what=str(path))
        if img.shape[:2] != tuple(size):
            got = f"{img.shape[1]}x{img.shape[0]}"
            raise MalformedError(f"{path}: expected a {size[1]}x{size[0]} image, got {got}")
        out[i] = img
    return out


def load_tinyimagenet(root: str | os.PathLike | None, split: str, limit: int | None = None) -> ArraySplit:
    """One split decoded: uint8 (N, 64, 64, 3) and int64 labels (train takes 1.2 GB; `limit` for fewer)."""
    samples, classes = tinyimagenet_samples(root, split)
    if limit is not None:
        samples = samples[:limit]
    images = decode_images([p for p, _ in samples])
    labels = np.array([y for _, y in samples], dtype=np.int64)
    source = str(find_tinyimagenet_folder(root))
    return ArraySplit("tinyimagenet", split, images, labels, tuple(classes), source=source)


def describe_tinyimagenet(root: str | os.PathLike | None) -> dict:
    """Check the folder and count every split: {'folder', 'classes', 'train', 'val', 'test', 'val-all'}."""
    info: dict = {"folder": find_tinyimagenet_folder(root)}
    for split in SPLITS:
        samples, classes = tinyimagenet_samples(root, split)
        info[split] = len(samples)
    info["classes"] = len(classes)
    return info


def pack_tinyimagenet_lmdb(
    root: str | os.PathLike | None,
    out_dir: str | os.PathLike,
    splits: Sequence[str] = ("train", "val", "test"),
    progress: Callable[[str, int], None] | None = None,
) -> dict[str, Path]:
    """Write `<out_dir>/<split>.lmdb` in BiP's LMDB format for each split; refuses existing outputs."""
    out = Path(out_dir).expanduser()
    targets = {split: out / f"{split}.lmdb" for split in splits}
    existing = [str(p) for p in targets.values() if p.exists()]
    if existing:
        raise UserError(f"{', '.join(existing)} already exist(s); not overwriting")
    listed = {split: tinyimagenet_samples(root, split)[0] for split in splits}  # validate all first
    for split, samples in listed.items():
        report = (lambda n, s=split: progress(s, n)) if progress else None
        write_lmdb(samples, targets[split], progress=report)
    return targets
