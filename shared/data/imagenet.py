"""ImageNet folders: Kaggle validation sorting, torchvision ImageFolder order, and BiP's folder2lmdb.

Kaggle layout (the "ImageNet Object Localization Challenge" download):

    ILSVRC/Data/CLS-LOC/train/<wnid>/<wnid>_<k>.JPEG       already one folder per class
    ILSVRC/Data/CLS-LOC/val/ILSVRC2012_val_<8 digits>.JPEG  50,000 images in one flat folder
    LOC_val_solution.csv                                   header `ImageId,PredictionString`; each row
        `ILSVRC2012_val_00008726,n02119789 255 142 454 329 n02119789 44 21 322 295` (ImageId without
        extension; PredictionString = repeated `wnid x_min y_min x_max y_max`, the first wnid is the label)

`sort_kaggle_val` builds `<out>/<wnid>/<file>` from that (BiP README step 10) by hard-linking, else
copying, the user's files; moving them only when asked. `imagefolder_samples` lists a class-folder
tree in torchvision `ImageFolder` order, which fixes the label ids: classes = sorted sub-folder names
-> 0..C-1; within a class, `os.walk` (recursive, sorted directories) and sorted file names, keeping
files whose lower-cased name ends in one of torchvision's image extensions. `folder_to_lmdb` packs such
a tree into BiP's LMDB format (`shared.data.lmdb_store`), e.g. `train.lmdb` and `val.lmdb`.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from shared.data.lmdb_store import COMMIT_EVERY, _raw_bytes, decode_rgb, write_lmdb
from shared.errors import MalformedError, UserError
from shared.paths import ensure_folder, write_failure

# torchvision.datasets.folder.IMG_EXTENSIONS (matched case-insensitively, as torchvision does)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
KAGGLE_VAL_HEADER = ("ImageId", "PredictionString")
WNID_RE = re.compile(r"n\d{8}\Z", re.ASCII)


def is_image_file(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def looks_like_image(head: bytes) -> bool:
    """True when the first bytes of a file carry the signature of a format in IMAGE_EXTENSIONS."""
    return (
        head.startswith((b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"BM", b"II*\x00", b"MM\x00*"))
        or (len(head) >= 2 and head[:1] == b"P" and head[1:2] in b"123456")  # PBM/PGM/PPM
        or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")
    )


def _preview(items: Sequence, n: int = 5) -> str:
    shown = ", ".join(str(x) for x in list(items)[:n])
    return shown + (f", ... ({len(items)} in all)" if len(items) > n else "")


# ----------------------------------------------------------------------------------------------------
# ImageFolder order
# ----------------------------------------------------------------------------------------------------


def imagefolder_classes(root: str | os.PathLike) -> list[str]:
    """Sorted names of the sub-folders of `root` (torchvision `find_classes`)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise UserError(f"image folder {root} does not exist (expected one sub-folder per class)")
    classes = sorted(entry.name for entry in os.scandir(root) if entry.is_dir())
    if not classes:
        raise UserError(f"{root}: no class sub-folders (expected {root}/<class>/<image files>)")
    return classes


def imagefolder_samples(
    root: str | os.PathLike, expected_classes: Sequence[str] | None = None
) -> tuple[list[tuple[Path, int]], list[str]]:
    """[(image path, label)] and the class names, in torchvision ImageFolder order.

    With `expected_classes` (e.g. the train folder's classes when listing val), the sub-folders must be
    exactly those, so that label ids agree between the two folders.
    """
    root = Path(root).expanduser()
    classes = imagefolder_classes(root)
    if expected_classes is not None and list(classes) != sorted(expected_classes):
        extra = sorted(set(classes) - set(expected_classes))
        lacking = sorted(set(expected_classes) - set(classes))
        raise UserError(
            f"{root}: class folders differ from the expected {len(expected_classes)} classes "
            f"(missing: {_preview(lacking) or 'none'}; unexpected: {_preview(extra) or 'none'})"
        )
    samples: list[tuple[Path, int]] = []
    empty = []
    for label, name in enumerate(classes):
        before = len(samples)
        for folder, _, files in sorted(os.walk(root / name, followlinks=True)):
            samples.extend((Path(folder) / f, label) for f in sorted(files) if is_image_file(f))
        if len(samples) == before:
            empty.append(name)
    if empty:
        raise UserError(
            f"{root}: no image files in class folder(s) {_preview(empty)} "
            f"(expected files ending in {', '.join(IMAGE_EXTENSIONS)})"
        )
    return samples, classes


def folder_to_lmdb(
    root: str | os.PathLike,
    out_path: str | os.PathLike,
    *,
    expected_classes: Sequence[str] | None = None,
    commit_every: int = COMMIT_EVERY,
    progress: Callable[[int], None] | None = None,
    verify: bool = False,
    warn: Callable[[str], None] | None = None,
) -> tuple[int, list[str]]:
    """BiP's `folder2lmdb`: pack an ImageFolder tree into a single-file LMDB. Returns (count, classes).

    Files are selected by extension, as torchvision does. A selected file that does not start with an
    image signature is packed (BiP would pack it too) and reported through `warn` (default: a Python
    warning); with `verify=True` every file is decoded and one that is not an image is refused.
    """
    out = Path(out_path).expanduser()
    if out.exists():  # fail before listing a large tree
        raise UserError(f"{out} already exists; not overwriting it")
    ensure_folder(out.parent, "output")
    samples, classes = imagefolder_samples(root, expected_classes)
    suspects: list[Path] = []

    def checked():
        for path, label in samples:
            raw = _raw_bytes(path)
            if verify:
                try:
                    decode_rgb(raw, str(path))
                except MalformedError as err:
                    raise UserError(f"{err} (--verify refuses files that are not images)") from err
            elif not looks_like_image(raw[:16]):
                suspects.append(path)
            yield raw, label

    n = write_lmdb(checked(), out, commit_every=commit_every, progress=progress)
    if suspects:
        message = (
            f"{len(suspects)} file(s) under {root} named like images do not look like images and were packed "
            f"anyway: {_preview([str(p) for p in suspects])}; use --verify to refuse them"
        )
        if warn is None:
            import warnings

            warnings.warn(message, stacklevel=2)
        else:
            warn(message)
    return n, classes


# ----------------------------------------------------------------------------------------------------
# Kaggle validation set -> class folders
# ----------------------------------------------------------------------------------------------------


def read_kaggle_val_solution(path: str | os.PathLike) -> dict[str, str]:
    """{ImageId: wnid} from Kaggle's LOC_val_solution.csv (the first wnid of each PredictionString)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"ground-truth file {path} does not exist (expected Kaggle's LOC_val_solution.csv)")
    labels: dict[str, str] = {}
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or tuple(h.strip() for h in header) != KAGGLE_VAL_HEADER:
            raise MalformedError(f"{path}: expected the header line 'ImageId,PredictionString', got {header!r}")
        for row in reader:
            line = reader.line_num
            if not row:
                continue
            if len(row) != 2 or not row[0].strip():
                got = ",".join(row)
                raise MalformedError(f"{path}:{line}: expected 'ImageId,PredictionString', got {got!r}")
            image_id, prediction = row[0].strip(), row[1].split()
            if not prediction or not WNID_RE.match(prediction[0]):
                raise MalformedError(
                    f"{path}:{line}: PredictionString must start with a wnid like n01440764, got {row[1]!r}"
                )
            if is_image_file(image_id):
                image_id = os.path.splitext(image_id)[0]
            if image_id in labels:
                raise MalformedError(f"{path}:{line}: image {image_id} is listed twice")
            labels[image_id] = prediction[0]
    if not labels:
        raise MalformedError(f"{path}: no rows after the header")
    return labels


def _images_by_stem(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        raise UserError(f"validation image folder {folder} does not exist")
    found: dict[str, Path] = {}
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if entry.is_file() and is_image_file(entry.name):
            stem = os.path.splitext(entry.name)[0]
            if stem in found:
                raise UserError(f"{folder}: two images named {stem} ({found[stem].name}, {entry.name})")
            found[stem] = Path(entry.path)
    return found


@dataclass
class SortedVal:
    """What `sort_kaggle_val` did: the output folder, counts, and how files were placed."""

    out_dir: Path
    images: int
    classes: int
    placed: dict[str, int] = field(default_factory=dict)  # 'hard-link' / 'copy' / 'move' -> count


class _Placer:
    """Put one file at its destination: move it, or hard-link it (copy when linking is impossible)."""

    def __init__(self, move: bool):
        self.move, self.can_link = move, not move
        self.counts: dict[str, int] = {}
        self.moved: list[tuple[Path, Path]] = []

    def __call__(self, src: Path, dst: Path) -> None:
        if self.move:
            shutil.move(src, dst)
            self.moved.append((src, dst))
            how = "move"
        else:
            how = "copy"
            if self.can_link:
                try:
                    os.link(src, dst)
                    how = "hard-link"
                except OSError:  # another filesystem, or links not allowed: copy from now on
                    self.can_link = False
            if how == "copy":
                shutil.copy2(src, dst)
        self.counts[how] = self.counts.get(how, 0) + 1

    def undo_moves(self) -> None:
        for src, dst in reversed(self.moved):
            shutil.move(dst, src)


def _check_out_dir(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"{out} already exists and is not empty; not overwriting it")


def sort_kaggle_val(
    val_images_dir: str | os.PathLike,
    ground_truth: str | os.PathLike,
    out_dir: str | os.PathLike,
    move: bool = False,
) -> SortedVal:
    """Sort the flat Kaggle validation folder into `out_dir/<wnid>/<file>` using LOC_val_solution.csv.

    Every listed image must exist and every image in the folder must be listed. By default the user's
    files stay where they are (hard links when possible, else copies); `move=True` moves them. The tree is
    built in a temporary sibling folder and renamed to `out_dir` when complete; a failed move is undone.
    """
    val_dir = Path(val_images_dir).expanduser()
    out = Path(out_dir).expanduser()
    labels = read_kaggle_val_solution(ground_truth)
    files = _images_by_stem(val_dir)
    missing = sorted(set(labels) - set(files))
    if missing:
        raise UserError(f"{val_dir}: {len(missing)} image(s) listed in {ground_truth} are missing: {_preview(missing)}")
    unlisted = sorted(set(files) - set(labels))
    if unlisted:
        raise UserError(
            f"{val_dir}: {len(unlisted)} image(s) are not listed in {ground_truth}: "
            f"{_preview([files[s].name for s in unlisted])}"
        )
    _check_out_dir(out)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    if tmp.exists():  # never delete it: after an interrupted --move it may hold the user's images
        raise UserError(f"{tmp} exists (left by an interrupted run?); look inside, then remove it")
    ensure_folder(out.parent, "output")
    try:
        tmp.mkdir()
    except OSError as err:
        raise write_failure(tmp, err, "folder") from err
    place = _Placer(move)
    try:
        for wnid in sorted(set(labels.values())):
            (tmp / wnid).mkdir()
        for stem in sorted(labels):
            src = files[stem]
            place(src, tmp / labels[stem] / src.name)
        _check_out_dir(out)
        if out.exists():
            out.rmdir()  # empty folder made by the user
        os.rename(tmp, out)
    except BaseException:
        try:
            place.undo_moves()
        except OSError as err:
            raise UserError(f"could not put the moved images back ({err}); they are under {tmp}") from err
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return SortedVal(out, len(labels), len(set(labels.values())), place.counts)
