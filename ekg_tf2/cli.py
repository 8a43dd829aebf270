"""Flags of the entry points, with the original programs' names and defaults (research/ekg.md 1.10),
plus what the original lacked (data folder, strategy, XLA choice, records, smoke-size overrides)."""

from __future__ import annotations

import argparse
import math

from ekg_tf2.models import check_arch
from shared import tf_train
from shared.errors import UserError, check_range
from shared.paths import DATA_ENV

DEFAULT_TRAIN_PATH = "runs/ekg/test"  # the README passes --train_path ../test


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    pass


def add_common_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--gpu_id", default=None, help="comma-separated GPU ids to use (all visible GPUs when omitted)")
    p.add_argument(
        "--arch",
        default="ResNet-56",
        help="ResNet-20, ResNet-56 (CIFAR; ResNet-8 for quick trials); ResNet-18/34/50 (ILSVRC)",
    )
    p.add_argument("--dataset", default="CIFAR10", help="CIFAR10, CIFAR100 (or ILSVRC)")
    p.add_argument("--train_path", default=DEFAULT_TRAIN_PATH, help="folder for everything this run writes")
    p.add_argument(
        "--data_dir",
        default=None,
        help=f"folder holding the dataset in its official python layout (or its parent); default ${DATA_ENV}",
    )
    p.add_argument("--accum", type=int, default=1, help="gradient accumulation: micro-batches per update")
    p.add_argument("--seed", type=int, default=0, help="seed of initialisation, data order and augmentation")
    p.add_argument(
        "--distribute",
        default="auto",
        choices=tf_train.STRATEGIES,
        help="tf.distribute strategy: auto (multi-worker from TF_CONFIG, mirrored over several GPUs), "
        "default, mirrored, multiworker",
    )
    p.add_argument(
        "--xla",
        default="auto",
        choices=("auto", "on", "off"),
        help="XLA (tf.function(jit_compile=True)); auto: on a GPU only (slower on a CPU: ekg_tf2.bench)",
    )
    p.add_argument("--compile", action="store_true", help="the original's flag: same as --xla on")
    p.add_argument("--records", default=None, metavar="DIR", help="write the run record under DIR/ekg/")
    p.add_argument(
        "--train_limit",
        type=int,
        default=None,
        help="use the first N training images for the memory bank and fine-tuning (smoke runs)",
    )
    p.add_argument("--test_limit", type=int, default=None, help="evaluate on the first N test images (smoke runs)")
    p.add_argument(
        "--image_size", type=int, default=224, help="ILSVRC crop size (smaller for smoke runs; FLOPs counted at 224)"
    )


def add_finetune_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("fine-tuning (train.py)")
    g.add_argument("--train_epoch", type=int, default=100, help="fine-tuning epochs")
    g.add_argument("--batch_size", type=int, default=128, help="global batch size")
    g.add_argument("--val_batch_size", type=int, default=256, help="evaluation batch size")
    g.add_argument("--learning_rate", type=float, default=0.01, help="initial learning rate")
    g.add_argument("--decay_points", type=float, nargs="+", default=[0.3, 0.6, 0.8], help="lr decay points (fractions)")
    g.add_argument("--decay_rate", type=float, default=0.2, help="lr factor at each decay point")
    g.add_argument("--weight_decay", type=float, default=5e-4, help="weight decay on every trainable variable")
    g.add_argument(
        "--Knowledge",
        action="store_true",
        help="fine-tune with the memory bank (full EKG, Eq. 12); off by default as in the original",
    )
    g.add_argument("--temperature", type=float, default=None, help="KD temperature (default 4; 10 for ILSVRC)")
    g.add_argument(
        "--memory_bank", default=None, help="memory bank .npy (default <dir of trained_param>/<DATASET>_knowledge.npy)"
    )
    g.add_argument("--max_steps", type=int, default=None, help="stop after this many updates (smoke runs)")
    g.add_argument("--steps_per_epoch", type=int, default=None, help="override N // batch_size (smoke runs)")


def add_search_flags(p: argparse.ArgumentParser, target_default: float) -> None:
    g = p.add_argument_group("search (pruning.py)")
    g.add_argument("--search_target_rate", type=float, default=target_default, help="fraction of FLOPs KEPT")
    g.add_argument("--search_step", type=float, default=0.2, help="width step (per gate: max(1/C, step / num_call))")
    g.add_argument("--search_batch_size", type=int, default=256, help="batch size over D^val")
    g.add_argument("--num_teacher", type=int, default=5, help="teachers in the memory bank")
    g.add_argument(
        "--trained_param",
        default=None,
        help="pre-trained params pkl (default for ResNet-56 on CIFAR10: ekg/res56_cifar10.pkl under "
        "$PRUNING_CHECKPOINT_DIR)",
    )
    g.add_argument("--val_per_class", type=int, default=32, help="D^val images per class (last of each class)")
    g.add_argument("--subset_per_class", type=int, default=256, help="D^subset images per class (first of each class)")
    g.add_argument("--max_search_iterations", type=int, default=100_000, help="stop the search early (smoke runs)")


def check_common(args) -> int:
    """Validate the shared flags; select GPUs; returns the number of classes."""
    num_classes = check_arch(args.arch, args.dataset)
    if getattr(args, "compile", False):
        args.xla = "on"
    if args.accum < 1:
        raise UserError(f"--accum must be >= 1, got {args.accum}")
    if getattr(args, "search_target_rate", None) is not None:
        if not math.isfinite(args.search_target_rate):
            raise UserError(f"--search_target_rate must be in (0.0, 1.0], got {args.search_target_rate}")
        check_range("--search_target_rate", args.search_target_rate, 0.0, 1.0, low_open=True)
    if args.gpu_id:
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        wanted = [int(i) for i in str(args.gpu_id).split(",") if i.strip()]
        if gpus:
            tf.config.set_visible_devices([gpus[i] for i in wanted if i < len(gpus)], "GPU")
    if args.dataset == "ILSVRC" and getattr(args, "image_size", 224) < 32:
        raise UserError(f"--image_size must be >= 32, got {args.image_size}")
    return num_classes
