"""The training loop of the three DSP stages, in pieces (as torchvision's references and pycls split it):

    dsp_torch/flags.py            the authors' flags (and ours) of every stage, their checks, run variants
    dsp_torch/runner.py           StageRunner: process group, device, data, output files, resume state,
                                  metrics (metrics.jsonl + TensorBoard events), run records, epoch skeleton
    dsp_torch/engine.py           train_one_epoch (hooks, accumulation, DDP no_sync) and evaluate
    dsp_torch/keeper.py           BestKeeper: the best-epoch checkpoint, rule (strict / ties, from epoch k)
    dsp_torch/stages/pretrain.py        dense pretraining (warm-up, steps)
    dsp_torch/stages/group_learning.py  differentiable group learning (GroupWrapper)
    dsp_torch/stages/finetune.py        pruning to the FLOPs target and cyclic fine-tuning (PruneWrapper)

The entry points (cifar_pretrain, cifar_dsp, cifar_finetune, imagenet) import from those modules;
this one names the public pieces in one place.
"""

from dsp_torch.engine import StepHooks, evaluate, train_one_epoch
from dsp_torch.flags import (
    add_common_args,
    add_dsp_args,
    add_finetune_args,
    dsp_variant,
    finetune_variant,
    validate_common,
    validate_dsp,
    validate_finetune,
)
from dsp_torch.keeper import BestKeeper
from dsp_torch.runner import EpochLoop, EpochResult, StageRunner
from dsp_torch.stages import finetune, group_learning, pretrain

__all__ = [
    "BestKeeper",
    "EpochLoop",
    "EpochResult",
    "StageRunner",
    "StepHooks",
    "add_common_args",
    "add_dsp_args",
    "add_finetune_args",
    "dsp_variant",
    "evaluate",
    "finetune",
    "finetune_variant",
    "group_learning",
    "pretrain",
    "train_one_epoch",
    "validate_common",
    "validate_dsp",
    "validate_finetune",
]
