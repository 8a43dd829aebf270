"""Differentiable group learning on a pretrained CIFAR ResNet (the authors' cifar_dsp.py).

    python -m dsp_torch.cifar_dsp -l 20 -g 4 -r 2e-3        # README: ResNet-20, 4 groups, lambda 2e-3
    python -m dsp_torch.cifar_dsp -l 56 -g 4 -r 5e-4        # README: ResNet-56, 4 groups, lambda 5e-4

Reads <save_dir>/resnet<L>.pkl and writes <save_dir>/resnet<L>_G<d>g<G>.pkl (the best test accuracy
from epoch index 9 on). Recipe (research notes 2.3): SGD lr 0.05, momentum 0.9, weight decay 1e-3,
batch 128, 120 epochs, cosine annealing over the run; group logits by Adam (lr 1e-3); Gumbel-softmax
temperature 0.5; the penalty ramps linearly over len(loader) x epochs steps.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dsp_torch.checkpoints import check_arch, load_checkpoint, model_from_checkpoint
from dsp_torch.dsp_module import check_groups
from dsp_torch.flags import add_common_args, add_dsp_args, dsp_variant, validate_dsp
from dsp_torch.models import cifar_resnet
from dsp_torch.runner import StageRunner
from dsp_torch.stages import group_learning
from shared.errors import main_guard


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m dsp_torch.cifar_dsp", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("-l", "--layers", type=int, default=20, help="ResNet depth (default 20)")
    add_dsp_args(p)
    add_common_args(p, epochs=120, lr=0.05, wd=1e-3)
    p.add_argument("--ckpt", help="pretrained checkpoint (default <save_dir>/resnet<L>.pkl)")
    return p


def run(args) -> int:
    validate_dsp(args)
    check_groups(cifar_resnet(args.layers), args.groups)  # bad -l / -g before any data is read
    variant = dsp_variant(args, depth=args.layers, shortcut="B")
    src = args.ckpt or str(Path(args.save_dir) / f"resnet{args.layers}.pkl")
    name = f"resnet{args.layers}_G{args.device}g{args.groups}.pkl"
    with StageRunner(args, "dsp", name, variant, source=src) as runner:
        if runner.finished_already():
            return 0
        ckpt = load_checkpoint(src, "pretrained checkpoint")
        check_arch(ckpt, src, depth=args.layers, num_classes=runner.data.num_classes)
        model = model_from_checkpoint(ckpt, src)
        group_learning.fit(runner, model, ckpt["arch"], {**vars(args), "stage": "dsp", "source": src}, variant)
        return 0


@main_guard
def main(argv=None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
