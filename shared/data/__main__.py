"""Prepare datasets.

python -m shared.data cifar10 --out DIR                 # download (online) and check
python -m shared.data cifar10 --out DIR --archive cifar-10-python.tar.gz
python -m shared.data cifar10 --out DIR --from /some/cifar-10-batches-py
python -m shared.data cifar100 --out DIR
python -m shared.data digits                            # summary of the embedded set
python -m shared.data tinyimagenet --root tiny-imagenet-200 [--lmdb-out DIR]
python -m shared.data imagenet-sort-val --val-dir val --solution LOC_val_solution.csv --out val_sorted
python -m shared.data folder2lmdb --root train --out train.lmdb      # BiP's LMDB format
python -m shared.data lmdb-info train.lmdb
"""

from __future__ import annotations

import argparse
import sys

from shared.errors import main_guard


def _add_cifar(sub, name: str):
    p = sub.add_parser(name, help=f"{name} in the official python layout")
    p.add_argument("--out", required=True, help="folder to put the dataset in")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--archive", help="the official .tar.gz you already have (md5 is verified)")
    src.add_argument("--from", dest="source_dir", help="a folder you already have, in the official layout")
    p.add_argument("--url", help="download from this address instead of the official one")

    def run(args):
        from shared.data.cifar import load_cifar, prepare_cifar

        folder = prepare_cifar(name, args.out, archive=args.archive, source_dir=args.source_dir, url=args.url)
        train, test = load_cifar(folder, name, "train"), load_cifar(folder, name, "test")
        print(f"{name}: {folder} ({len(train)} train, {len(test)} test images, {train.num_classes} classes)")

    p.set_defaults(run=run)


def _add_digits(sub):
    p = sub.add_parser("digits", help="summary of the embedded digits set (no download)")

    def run(args):
        from shared.data.digits import load_digits_cifar

        for split in ("train", "test"):
            d = load_digits_cifar(split)
            print(f"digits {split}: {len(d)} images {d.images.shape[1:]} sha256[:16]={d.fingerprint()}")

    p.set_defaults(run=run)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m shared.data", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _add_cifar(sub, "cifar10")
    _add_cifar(sub, "cifar100")
    _add_digits(sub)
    try:  # TinyImageNet / ImageNet / LMDB commands
        from shared.data.imagenet_cli import add_commands
    except ImportError:
        pass
    else:
        add_commands(sub)
    return parser


@main_guard
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    args.run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
