"""TinyImageNet / ImageNet / LMDB subcommands of `python -m shared.data`.

    python -m shared.data tinyimagenet --root tiny-imagenet-200 [--lmdb-out DIR]
    python -m shared.data imagenet-sort-val --val-dir ILSVRC/Data/CLS-LOC/val \\
        --solution LOC_val_solution.csv --out imagenet/val [--move]
    python -m shared.data folder2lmdb --root imagenet/train --out imagenet/train.lmdb [--verify]
    python -m shared.data folder2lmdb --root imagenet/val --out imagenet/val.lmdb \\
        --classes-from imagenet/train
    python -m shared.data lmdb-info imagenet/val.lmdb [--all]
"""

from __future__ import annotations

import sys


def _progress(what: str):
    def report(n: int) -> None:
        print(f"  {what}: {n} records written", file=sys.stderr, flush=True)

    return report


def _split_progress(split: str, n: int) -> None:
    _progress(split)(n)


def _add_tinyimagenet(sub):
    p = sub.add_parser("tinyimagenet", help="check a tiny-imagenet-200 folder; optionally pack LMDBs")
    p.add_argument("--root", help="the tiny-imagenet-200 folder or its parent (default: $PRUNING_DATA_DIR)")
    p.add_argument("--lmdb-out", help="write train.lmdb, val.lmdb, test.lmdb (BiP's LMDB format) here")

    def run(args):
        from shared.data import tinyimagenet as tin

        info = tin.describe_tinyimagenet(args.root)
        print(
            f"tinyimagenet: {info['folder']} ({info['classes']} classes; {info['train']} train, "
            f"{info['val-all']} official val = {info['val']} val + {info['test']} test, sorted 25/25 rule)"
        )
        if args.lmdb_out:
            targets = tin.pack_tinyimagenet_lmdb(args.root, args.lmdb_out, progress=_split_progress)
            for split, path in targets.items():
                print(f"wrote {path} ({info[split]} records)")

    p.set_defaults(run=run)


def _add_sort_val(sub):
    p = sub.add_parser("imagenet-sort-val", help="sort Kaggle's flat ImageNet val folder into class folders")
    p.add_argument("--val-dir", required=True, help="the flat folder of ILSVRC2012_val_*.JPEG images")
    p.add_argument("--solution", required=True, help="Kaggle's LOC_val_solution.csv")
    p.add_argument("--out", required=True, help="new folder to create <out>/<wnid>/<file> in")
    p.add_argument(
        "--move",
        action="store_true",
        help="move the images instead of hard-linking/copying them (your --val-dir is emptied)",
    )

    def run(args):
        from shared.data.imagenet import sort_kaggle_val

        done = sort_kaggle_val(args.val_dir, args.solution, args.out, move=args.move)
        how = ", ".join(f"{n} by {k}" for k, n in sorted(done.placed.items()))
        print(f"imagenet val: {done.images} images in {done.classes} class folders in {done.out_dir} ({how})")

    p.set_defaults(run=run)


def _add_folder2lmdb(sub):
    p = sub.add_parser("folder2lmdb", help="pack an ImageFolder tree into a BiP-format single-file LMDB")
    p.add_argument("--root", required=True, help="folder with one sub-folder per class")
    p.add_argument("--out", required=True, help="the .lmdb file to create (must not exist)")
    p.add_argument("--classes-from", help="require the class folders of this folder (e.g. train/ for val/)")
    p.add_argument(
        "--verify",
        action="store_true",
        help="decode every image and refuse a file that is not one (slower; without it such files are "
        "packed, as BiP's folder2lmdb does, with a warning)",
    )

    def run(args):
        from shared.data.imagenet import folder_to_lmdb, imagefolder_classes

        expected = imagefolder_classes(args.classes_from) if args.classes_from else None
        progress = _progress(args.out)
        n, classes = folder_to_lmdb(
            args.root,
            args.out,
            expected_classes=expected,
            progress=progress,
            verify=args.verify,
            warn=lambda message: print(f"warning: {message}", file=sys.stderr, flush=True),
        )
        print(f"wrote {args.out} ({n} records, {len(classes)} classes)")

    p.set_defaults(run=run)


def _add_lmdb_info(sub):
    p = sub.add_parser("lmdb-info", help="length, first keys and label range of a BiP-format LMDB")
    p.add_argument("path", help="the .lmdb file (or LMDB directory)")
    p.add_argument("--all", action="store_true", help="read every record for the label range (default: 1000)")

    def run(args):
        import numpy as np

        from shared.data.lmdb_store import LmdbImageDataset

        with LmdbImageDataset(args.path) as ds:
            n = len(ds)
            print(f"{args.path}: {n} records")
            print(f"first keys: {[ds.key(i) for i in range(min(n, 5))]}")
            if n:
                idx = range(n) if args.all or n <= 1000 else np.linspace(0, n - 1, 1000).astype(int).tolist()
                labels = ds.labels(idx)
                scope = "all records" if len(idx) == n else f"{len(idx)} records spread evenly; --all for all"
                print(f"labels: {labels.min()}..{labels.max()}, {len(np.unique(labels))} distinct ({scope})")

    p.set_defaults(run=run)


def add_commands(subparsers) -> None:
    """Register the commands on `python -m shared.data`'s subparsers."""
    _add_tinyimagenet(subparsers)
    _add_sort_val(subparsers)
    _add_folder2lmdb(subparsers)
    _add_lmdb_info(subparsers)
