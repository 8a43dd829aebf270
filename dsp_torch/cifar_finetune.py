"""Group-channel pruning and fine-tuning of a group-learned CIFAR ResNet (the authors' cifar_finetune.py).

    python -m dsp_torch.cifar_finetune -l 20 -g 4 -p 0.5     # prune ~50 % of the prunable-conv FLOPs

Reads <save_dir>/resnet<L>_G<d>g<G>.pkl and writes <save_dir>/resnet<L>_P<d>g<G>c<p>.pkl. Recipe
(research notes 1.6, 2.4): PruneWrapper(model, G, fp_every_nth_conv=2); 400 epochs in 5 cycles of 80,
each with a fresh SGD (lr 0.015, momentum 0.9, weight decay 1e-3) and cosine annealing; at the end of
every cycle but the last, the best model is reloaded and pruned again at its FLOPs rate + 0.1 points
(masks reset first); the best-test-accuracy epoch (ties accepted) is kept with its pruning level.
`-p` is a target, not a floor: the bisection ends between two tried betas that bracket it, so a rate
lands a little above or below it (-0.024 points were measured); a result more than 5 points away stops
with an error (with the default --empty-group prune it can otherwise be a 100 %-pruned model).

Time: besides the epochs, every prune (before the first epoch, and at the end of each cycle but the last)
runs --bisection-steps trials and a final prune, each with a dead-unit cascade of --cascade-passes
forward/backward passes of 80 random images: 11 x 125 = 1,375 passes per prune with the released
defaults, which dominates short runs on a CPU (the first prune of ResNet-20 took about 18 minutes on a
loaded 2-core machine; seconds on a GPU). --cascade-passes 10 makes it about 12x shorter (a unit is cut
when its gradient is exactly zero on all passes, which random images rarely leave for a live unit);
fewer --bisection-steps land less close to -p. Each bisection trial prints a line; an interrupted run
(Ctrl-C, SIGTERM) resumes from the end of its last finished epoch when rerun with the same flags.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from torch import nn

from dsp_torch.checkpoints import check_arch, load_checkpoint, model_from_checkpoint
from dsp_torch.dsp_module import attach_prune_buffers, check_groups
from dsp_torch.flags import add_common_args, add_finetune_args, finetune_variant, validate_finetune
from dsp_torch.models import cifar_resnet
from dsp_torch.runner import StageRunner
from dsp_torch.stages import finetune
from shared.errors import UserError, main_guard


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m dsp_torch.cifar_finetune",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("-l", "--layers", type=int, default=20, help="ResNet depth (default 20)")
    add_finetune_args(p, fp_every_nth_conv=2)
    add_common_args(p, epochs=400, lr=0.015, wd=1e-3)
    p.add_argument("--ckpt", help="group-learned checkpoint (default <save_dir>/resnet<L>_G<d>g<G>.pkl)")
    return p


def load_group_learned(
    path, groups: int, depth: int | None = None, arch_name: str | None = None, num_classes: int | None = None
) -> tuple:
    """(model with the pruning buffers: `group` from the checkpoint, `mask` all ones; its checkpoint)."""
    ckpt = load_checkpoint(path, "group-learned checkpoint")
    check_arch(ckpt, path, depth=depth, arch_name=arch_name, num_classes=num_classes)
    if ckpt["stage"] != "group-learned":
        raise UserError(f"{path} is a {ckpt['stage']} checkpoint; fine-tuning needs the group-learned one")
    if ckpt["groups"] != groups:
        raise UserError(f"{path} was group-learned with -g {ckpt['groups']}, but -g {groups} was given")
    sd = ckpt["state_dict"]
    logits = {k: v for k, v in sd.items() if k.endswith(".group")}
    model: nn.Module = model_from_checkpoint(
        {**ckpt, "state_dict": {k: v for k, v in sd.items() if k not in logits}}, path
    )
    layers = attach_prune_buffers(model, groups)
    if len(logits) != len(layers):
        raise UserError(f"{path} has group logits for {len(logits)} convs; the model has {len(layers)} prunable ones")
    model.load_state_dict({**model.state_dict(), **logits}, strict=True)
    return model, ckpt


def run(args) -> int:
    validate_finetune(args)
    check_groups(cifar_resnet(args.layers), args.groups)
    variant = finetune_variant(args, depth=args.layers, shortcut="B")
    name = f"resnet{args.layers}_P{args.device}g{args.groups}c{args.prune:.2f}.pkl"
    src = args.ckpt or str(Path(args.save_dir) / f"resnet{args.layers}_G{args.device}g{args.groups}.pkl")
    with StageRunner(args, "finetune", name, variant, source=src) as runner:
        if runner.finished_already():
            return 0
        model, ckpt = load_group_learned(src, args.groups, depth=args.layers, num_classes=runner.data.num_classes)
        finetune.fit(
            runner,
            model,
            ckpt["arch"],
            {**vars(args), "stage": "finetune", "source": src},
            variant,
            row=f"cifar10/resnet{args.layers}/g{args.groups}",
        )
        return 0


@main_guard
def main(argv=None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
