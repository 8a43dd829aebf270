"""The stages' command-line flags: the authors' names and defaults first, then our additions.

`add_common_args` is shared by every stage (cifar_pretrain, cifar_dsp, cifar_finetune, imagenet);
`add_dsp_args` adds group learning's (-g -r -t), `add_finetune_args` pruning's (-c -g -p). The
`*_variant` helpers give what run records store about the method's variant.
"""

from __future__ import annotations

import argparse

import torch

from shared.errors import UserError, check_count, check_range
from shared.paths import data_root


def add_common_args(p: argparse.ArgumentParser, *, epochs: int, lr: float, wd: float, batch_size: int = 128):
    p.set_defaults(recipe_epochs=epochs)  # a run shorter than the recipe is recorded as a smoke run
    p.add_argument(
        "--save_dir",
        "--save-dir",
        dest="save_dir",
        default="./cifarmodel/",
        help="folder for checkpoints and logs (the authors' default ./cifarmodel/)",
    )
    p.add_argument(
        "-d",
        "--device",
        default="0",
        help="the authors' GPU id: the stage runs on cuda:<d> when CUDA is available (one job per GPU, as "
        "in the authors' workflow) and <d> is part of the group-learned / pruned file names (default 0); "
        "--device-type overrides the device; under torchrun each process takes its LOCAL_RANK's GPU",
    )
    p.add_argument(
        "-j",
        "--workers",
        type=int,
        default=4,
        help="accepted for compatibility; CIFAR batches are built on the device, no workers",
    )
    p.add_argument("--epochs", type=int, default=epochs, help=f"number of epochs (default {epochs})")
    p.add_argument(
        "-b",
        "--batch-size",
        type=int,
        default=batch_size,
        help=f"global mini-batch size over all processes and micro-batches (default {batch_size})",
    )
    p.add_argument("--lr", "--learning-rate", type=float, default=lr, help=f"initial learning rate (default {lr})")
    p.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (default 0.9)")
    p.add_argument("--wd", "--weight-decay", dest="wd", type=float, default=wd, help=f"weight decay (default {wd})")
    g = p.add_argument_group("additions (not in the original scripts)")
    g.add_argument(
        "--data-dir",
        help="folder holding CIFAR-10 (cifar-10-batches-py/ or its parent); default $PRUNING_DATA_DIR; "
        "without either the stage stops (pass --dataset digits for the embedded demo set)",
    )
    g.add_argument(
        "--dataset",
        choices=["cifar10", "digits"],
        help="default: cifar10 from --data-dir / $PRUNING_DATA_DIR; digits = the embedded demo set (make demo)",
    )
    g.add_argument(
        "--device-type", default="auto", help="auto (cuda:<-d> when CUDA is available, else cpu) | cpu | cuda | cuda:N"
    )
    g.add_argument("--seed", type=int, default=0, help="seed of initialisation, data order and augmentation")
    g.add_argument("--accum-steps", type=int, default=1, help="micro-batches per step (gradient accumulation)")
    g.add_argument("--precision", choices=["fp32", "bf16"], default="fp32", help="bf16 autocast (GPU)")
    g.add_argument("--channels-last", action="store_true", help="channels_last memory format (GPU speed)")
    g.add_argument("--compile", action="store_true", help="torch.compile the forward pass (GPU speed)")
    g.add_argument("--train-limit", type=int, help="use only this many training images (class-balanced)")
    g.add_argument("--test-limit", type=int, help="evaluate on the first this many test images only (smoke runs)")
    g.add_argument("--records", help="folder for the run record (default <save_dir>/records)")
    g.add_argument("--overwrite", action="store_true", help="train again although the stage has finished")
    g.add_argument("--stop-after-epoch", type=int, help=argparse.SUPPRESS)  # simulates an interruption


def stage_dataset(args) -> str:
    """--dataset, else cifar10 when a data folder is known; without one the stage stops (the authors'
    commands would otherwise train on the 1,797-image digits demo set without a word)."""
    if getattr(args, "dataset", None):
        return args.dataset
    if data_root(args.data_dir) is None:
        raise UserError(
            "no CIFAR-10 folder: pass --data-dir DIR (holding cifar-10-batches-py/) or set PRUNING_DATA_DIR; "
            "--dataset digits trains on the embedded digits demo set instead (what make demo does)"
        )
    return "cifar10"


def stage_device(device_type: str, gpu: str) -> str:
    """The device of a stage: --device-type when given, else GPU `-d` when CUDA is available (the
    authors' scripts run one job per GPU, `-d` choosing it), else the CPU."""
    if device_type != "auto":
        return device_type
    if not torch.cuda.is_available():
        return "cpu"
    try:
        index = int(gpu)
    except ValueError:
        raise UserError(f"-d/--device must be a GPU index, got {gpu!r}") from None
    count = torch.cuda.device_count()
    if not 0 <= index < count:
        raise UserError(f"-d/--device {index}: this machine has {count} GPU(s), numbered 0 to {count - 1}")
    return f"cuda:{index}"


# Flags that do not define what a stage computes: where files go, the device, how the batch is split
# (accumulation and processes give the same steps), speed options, the data's path (its identity is
# compared instead) and the source checkpoint's path (its content hash is compared instead).
NOT_DEFINING = frozenset(
    {
        "save_dir",
        "device",
        "device_type",
        "workers",
        "data_dir",
        "dataset",
        "val",
        "records",
        "overwrite",
        "stop_after_epoch",
        "recipe_epochs",
        "accum_steps",
        "channels_last",
        "compile",
        "ckpt",
        "pretrained",
        "command",
    }
)


def stage_settings(args, source=None) -> dict:
    """What defines a stage's result: every flag but NOT_DEFINING, and the content hash of the
    checkpoint it starts from. A stage resumes, or counts as finished, only with the same settings."""
    import hashlib
    from pathlib import Path

    settings = {k: v for k, v in sorted(vars(args).items()) if k not in NOT_DEFINING}
    if source is not None and Path(source).is_file():
        settings["source_sha256_16"] = hashlib.sha256(Path(source).read_bytes()).hexdigest()[:16]
    return settings


def validate_common(args) -> None:
    check_range("--epochs", args.epochs, 1, 10**6)
    check_range("--batch-size", args.batch_size, 1, 10**6)
    check_range("--lr", args.lr, 0, 10, low_open=True)
    check_range("--momentum", args.momentum, 0, 1, high_open=True)
    check_range("--wd", args.wd, 0, 1)
    check_range("--accum-steps", args.accum_steps, 1, 10**4)
    for flag in ("train_limit", "test_limit"):
        if getattr(args, flag, None) is not None:
            check_count("--" + flag.replace("_", "-"), getattr(args, flag), 1)


def add_dsp_args(p: argparse.ArgumentParser) -> None:
    """Group-learning flags (the authors' -g -r -t) and the variants."""
    p.add_argument("-g", "--groups", type=int, default=4, help="number of groups per conv (default 4)")
    p.add_argument("-r", "--regularize", type=float, default=2e-3, help="regularisation power lambda (default 2e-3)")
    p.add_argument(
        "-t",
        "--temparature",
        "--temperature",
        dest="temperature",
        type=float,
        default=0.5,
        help="Gumbel-softmax temperature (default 0.5; the authors spell the flag --temparature)",
    )
    g = p.add_argument_group("DSP variants (defaults: the released code)")
    g.add_argument(
        "--reg-scale",
        choices=["activation", "kernel"],
        default="activation",
        help="per-layer penalty scale: 'activation' = sqrt(C_in H W / 16384) k (G/N)^1.5 (released, "
        "made the checkpoints); 'kernel' = k (G/N)^1.5 (first release, likely the paper's)",
    )
    g.add_argument(
        "--second-order",
        choices=["released", "exact", "none"],
        default="released",
        help="mixed second-order term of the unrolled step: the released per-filter form, the exact "
        "double-backward one, or none",
    )
    g.add_argument("--group-lr", type=float, default=1e-3, help="Adam learning rate of the group logits")
    g.add_argument(
        "--save-from-epoch",
        type=int,
        default=9,
        help="keep the best epoch from this index on (authors: 9; shorter runs use their last epoch)",
    )


def add_finetune_args(p: argparse.ArgumentParser, fp_every_nth_conv: int = 2) -> None:
    """Pruning flags (the authors' -c -g -p) and the variants / costs."""
    p.add_argument("-c", "--cycles", type=int, default=5, help="fine-tuning cycles (default 5)")
    p.add_argument("-g", "--groups", type=int, default=4, help="number of groups, as in group learning (default 4)")
    p.add_argument(
        "-p",
        "--prune",
        type=float,
        default=0.5,
        help="target fraction of pruned prunable-conv FLOPs, in (0, 1); a target, not a floor (the result lands "
        "near it; more than 5 points off is an error)",
    )
    g = p.add_argument_group("DSP variants and costs")
    g.add_argument(
        "--fp-every-nth-conv",
        type=int,
        default=fp_every_nth_conv,
        help=f"filter-prune every n-th prunable conv (default {fp_every_nth_conv}; -1: none)",
    )
    g.add_argument(
        "--empty-group",
        choices=["prune", "keep"],
        default="prune",
        help="a group with no channel under beta: 'prune' every channel (released quirk) or keep all",
    )
    g.add_argument(
        "--cascade-passes",
        type=int,
        default=125,
        help="random forward/backward passes of the dead-unit cascade (released: 125 of 80 images)",
    )
    g.add_argument("--bisection-steps", type=int, default=10, help="beta bisection steps (released: 10)")


def dsp_variant(args, **extra) -> dict:
    return {
        "groups": args.groups,
        "reg_scale": args.reg_scale,
        "second_order": args.second_order,
        "lambda": args.regularize,
        "temperature": args.temperature,
        **extra,
    }


def finetune_variant(args, **extra) -> dict:
    return {
        "groups": args.groups,
        "pruning_rate": args.prune,
        "fp_every_nth_conv": args.fp_every_nth_conv,
        "empty_group": args.empty_group,
        "cascade_passes": args.cascade_passes,
        **extra,
    }


def validate_dsp(args) -> None:
    check_range("-g/--groups", args.groups, 1, 10**4)
    check_range("-r/--regularize", args.regularize, 0, 10)
    check_range("-t/--temperature", args.temperature, 0, 1e3, low_open=True)


def validate_finetune(args) -> None:
    check_range("-g/--groups", args.groups, 1, 10**4)
    check_range("-p/--prune", args.prune, 0, 1, low_open=True, high_open=True)
    check_count("-c/--cycles", args.cycles, 1)
    if args.cycles > args.epochs:
        raise UserError(
            f"-c/--cycles {args.cycles} needs --epochs of at least {args.cycles} (each cycle is "
            f"ceil(epochs / cycles) epochs); --epochs is {args.epochs}: pass --epochs {args.cycles} or more, "
            f"or fewer cycles"
        )
    check_range("--cascade-passes", args.cascade_passes, 1, 10**5)
