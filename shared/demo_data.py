"""First stage of `make demo`: load the demo data through the shared readers and describe it.

python -m shared.demo_data [--data-dir DIR]     # CIFAR-10 from DIR, else the embedded digits
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from shared.data import load_image_classification
from shared.errors import main_guard
from shared.paths import data_root


def demo_dataset(data_dir) -> str:
    """'cifar10' when a data folder is given (option or PRUNING_DATA_DIR), else 'digits'."""
    return "cifar10" if data_root(data_dir) is not None else "digits"


@main_guard
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", help="folder holding CIFAR-10 (default: $PRUNING_DATA_DIR, else digits)")
    args = parser.parse_args(argv)
    name = demo_dataset(args.data_dir)
    for split in ("train", "test"):
        d = load_image_classification(name, split, args.data_dir)
        counts = np.bincount(d.labels, minlength=d.num_classes)
        print(
            f"{name} {split}: {len(d)} images {d.images.shape[1:]}, classes {d.num_classes} "
            f"(per class {counts.min()}-{counts.max()}), sha256[:16] {d.fingerprint()}, from {d.source}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
