"""Pretrain a dense CIFAR ResNet (the authors' cifar_pretrain.py).

    python -m dsp_torch.cifar_pretrain -l 20 [--save-dir ./cifarmodel] [--epochs 164] [--batch-size 128]
                                       [--lr 0.1] [--momentum 0.9] [--wd 1e-4] [--data-dir DIR]

Recipe (research notes 2.2): SGD, lr 0.1 with a warm-up at lr/4 for epochs 0-1, x0.1 at epochs//2 and
3*epochs//4, weight decay 1e-4, batch 128 (drop_last), flip + crop augmentation. The best-test-accuracy
epoch is saved as <save_dir>/resnet<L>.pkl.
"""

from __future__ import annotations

import argparse
import sys

from dsp_torch.flags import add_common_args
from dsp_torch.models import check_depth, cifar_resnet
from dsp_torch.runner import StageRunner
from dsp_torch.stages import pretrain
from shared.errors import main_guard


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m dsp_torch.cifar_pretrain",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("-l", "--layers", type=int, default=20, help="ResNet depth: 20, 32, 44, 56 or 110 (default 20)")
    add_common_args(p, epochs=164, lr=0.1, wd=1e-4)
    return p


def run(args) -> int:
    check_depth(args.layers)  # before any data is read
    with StageRunner(args, "pretrain", f"resnet{args.layers}.pkl", {"depth": args.layers, "shortcut": "B"}) as runner:
        if not runner.finished_already():
            model = cifar_resnet(args.layers, runner.data.num_classes)  # after the runner seeded the RNGs
            arch = {"family": "cifar", "depth": args.layers, "num_classes": runner.data.num_classes}
            pretrain.fit(runner, model, arch, {**vars(args), "stage": "pretrain"})
        return 0


@main_guard
def main(argv=None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
