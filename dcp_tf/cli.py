"""The command line shared by `resnet_at_cifar10_run` and `resnet_at_ilsvrc12_run`: PocketFlow's flags
with PocketFlow's defaults (learners/abstract_learner.py, learners/discr_channel_pruning/learner.py,
learners/distillation_helper.py, nets/resnet_at_*.py), plus what PocketFlow lacked (data folder, DCP
variant, replicas on a CPU, accumulation, XLA, run records).

    python -m dcp_tf.resnet_at_cifar10_run --learner full-prec --data_dir DATA
    python -m dcp_tf.resnet_at_cifar10_run --learner dis-chn-pruned --dcp_prune_ratio 0.75 --data_dir DATA
    python -m dcp_tf.resnet_at_cifar10_run --learner dis-chn-pruned --dcp_variant paper --resnet_size 56 ...
    python -m dcp_tf.resnet_at_cifar10_run --learner dis-chn-pruned --exec_mode eval
"""

from __future__ import annotations

import argparse
import math
import sys
import time

from shared.errors import UserError, check_range

# (resnet_size, lrn_rate_init, batch_size_norm, loss_w_dcy, nb_epochs, lr epochs, batch_size) per dataset
MODEL_DEFAULTS = {
    "cifar10": dict(
        resnet_size=20,
        batch_size=128,
        batch_size_norm=128,
        loss_w_dcy=2e-4,
        nb_epochs=250.0,
        lr_epochs=(100.0, 150.0, 200.0),
        paper_stage_epochs=100.0,
        paper_final_epochs=400.0,
        paper_final_lr_epochs=(160.0, 240.0),
        paper_lr=0.1,
        paper_select_samples=-1,
    ),
    "ilsvrc12": dict(
        resnet_size=18,
        batch_size=64,
        batch_size_norm=256,
        loss_w_dcy=1e-4,
        nb_epochs=100.0,
        lr_epochs=(30.0, 60.0, 80.0, 90.0),
        paper_stage_epochs=20.0,
        paper_final_epochs=60.0,
        paper_final_lr_epochs=(36.0, 48.0, 54.0),
        paper_lr=0.01,
        paper_select_samples=10000,
    ),
}


def str2bool(text: str) -> bool:
    low = str(text).lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    pass


BOOL = "bool"  # a PocketFlow-style boolean flag: --flag, --flag true, --flag false


def _add(group, rows) -> None:
    """Add (flag, type, default, help[, choices]) rows to an argument group."""
    for name, kind, default, help_text, *choices in rows:
        if kind == BOOL:
            group.add_argument(name, type=str2bool, nargs="?", const=True, default=default, help=help_text)
        elif choices:
            group.add_argument(name, default=default, choices=choices[0], help=help_text)
        else:
            group.add_argument(name, type=kind, default=default, help=help_text)


def build_parser(dataset: str) -> argparse.ArgumentParser:
    h = MODEL_DEFAULTS[dataset]
    prog = f"python -m dcp_tf.resnet_at_{dataset}_run"
    p = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=HelpFormatter)
    # fmt: off
    _add(p.add_argument_group("PocketFlow run flags (nets/*_run.py, abstract_learner.py)"), [
        ("--learner", str, "full-prec", "full-prec: train the baseline into save_path; dis-chn-pruned: DCP from it",
         ("full-prec", "dis-chn-pruned")),
        ("--exec_mode", str, "train", "train, or evaluate a saved model", ("train", "eval")),
        ("--enbl_multi_gpu", BOOL, False, "data-parallel on every GPU (tf.distribute.MirroredStrategy in Horovod's "
         "place; MultiWorkerMirroredStrategy when TF_CONFIG names several workers); iterations / replicas"),
        ("--log_dir", str, "./logs", "TensorBoard summaries and metrics.jsonl"),
        ("--save_path", str, "./models/model.ckpt", "the pre-trained (full-prec) model"),
        ("--save_path_eval", str, "./models_eval/model.ckpt", "full-prec model for evaluation"),
        ("--summ_step", int, 100, "log every N steps"),
        ("--save_step", int, 10000, "checkpoint every N steps"),
        ("--enbl_dst", BOOL, False, "distillation from the pre-trained model in DCP's final fine-tuning"),
        ("--loss_w_dst", float, 4.0, "distillation loss weight"),
        ("--tempr_dst", float, 4.0, "distillation temperature (no T^2 factor)"),
        ("--debug", BOOL, False, "log every step"),
    ])
    _add(p.add_argument_group("DCP flags (learners/discr_channel_pruning/learner.py)"), [
        ("--dcp_save_path", str, "./models_dcp/model.ckpt",
         "training checkpoints of the DCP run (masks, aux heads, optimisers, progress: resumable)"),
        ("--dcp_save_path_eval", str, "./models_dcp_eval/model.ckpt",
         "the pruned model for evaluation and its slimmed export (SavedModel, TFLite)"),
        ("--dcp_prune_ratio", float, 0.5,
         "fraction of input channels removed from each pruned conv: keeps c - floor(ratio c)"),
        ("--dcp_nb_stages", int, 3, "P, the number of discrimination-aware losses"),
        ("--dcp_lrn_rate_adam", float, 1e-3, "Adam lr of block/layer fine-tuning"),
        ("--dcp_nb_iters_block", int, 10000, "block-wise fine-tuning iterations"),
        ("--dcp_nb_iters_layer", int, 500, "layer-wise fine-tuning iterations after each channel addition"),
        ("--dcp_variant", str, "pocketflow",
         "pocketflow: PocketFlow's learner; paper: the authors' 2018 code (the paper's tables)",
         ("pocketflow", "paper")),
        ("--dcp_paper_stage_epochs", float, h["paper_stage_epochs"],
         "paper: epochs of stage fine-tuning (x0.1 at 40 %% and 60 %%)"),
        ("--dcp_paper_select_samples", int, h["paper_select_samples"],
         "paper: images the channel scores are accumulated over (-1: the whole training set)"),
        ("--dcp_paper_final_epochs", float, h["paper_final_epochs"], "paper: epochs of the final fine-tuning"),
        ("--dcp_save_every_picks", int, 1, "checkpoint after every N channel additions"),
    ])
    _add(p.add_argument_group(f"ModelHelper flags (nets/resnet_at_{dataset}.py)"), [
        ("--resnet_size", int, h["resnet_size"], "ResNet depth"),
        ("--resnet_def", str, "auto",
         "network: PocketFlow's ResNet or the paper's PreResNet (auto: that of --dcp_variant)",
         ("auto", "pocketflow", "paper")),
        ("--batch_size", int, h["batch_size"], "batch size per replica"),
        ("--batch_size_eval", int, 100, "evaluation batch size"),
        ("--lrn_rate_init", float, 0.1, "initial lr (x global batch / batch_size_norm)"),
        ("--batch_size_norm", int, h["batch_size_norm"], "lr normalising batch"),
        ("--momentum", float, 0.9, "momentum coefficient"),
        ("--loss_w_dcy", float, h["loss_w_dcy"], "weight decay of non-BN variables"),
        ("--nb_epochs_rat", float, 1.0, "scales the number of training epochs"),
    ])
    extras = p.add_argument_group("extras")
    _add(extras, [
        ("--data_dir", str, None,
         "CIFAR-10 folder (cifar-10-batches-bin or -py) or ImageNet; default $PRUNING_DATA_DIR"),
        ("--dataset_name", str, dataset, "digits: the embedded scikit-learn digits shaped like CIFAR (demo, tests)",
         (dataset, "digits") if dataset == "cifar10" else (dataset,)),
        ("--nb_iters_train", int, 0, "full-prec: steps instead of the epoch schedule"),
        ("--seed", int, 0, "seed of initialisation and data order"),
        ("--logical_cpus", int, 0, "split the CPU into N devices and mirror over them (tests tf.distribute on a CPU)"),
        ("--accum_steps", int, 1, "gradient accumulation micro-batches per step"),
        ("--xla", BOOL, False, "jit_compile the steps"),
        ("--bn_decay", float, None, "BN moving-average decay for short runs (default: the network's, 0.997 / 0.9)"),
        ("--records", str, None, "folder for the run record (default: none)"),
    ])
    # fmt: on
    extras.add_argument("--no_export", action="store_true", help="skip the SavedModel/TFLite export")
    if dataset == "ilsvrc12":
        extras.add_argument("--image_size", type=int, default=224,
                            help="input size (TF-official 224; smaller only for smoke runs)")  # fmt: skip
    return p


def validate(args) -> None:
    for name in (
        "dcp_prune_ratio",
        "dcp_lrn_rate_adam",
        "lrn_rate_init",
        "loss_w_dcy",
        "nb_epochs_rat",
        "momentum",
        "loss_w_dst",
        "tempr_dst",
    ):
        value = getattr(args, name)
        if not math.isfinite(value):
            raise UserError(f"--{name} must be a finite number, got {value}")
    check_range("--dcp_prune_ratio", args.dcp_prune_ratio, 0.0, 1.0, high_open=True)
    if args.dcp_nb_stages < 1:
        raise UserError(f"--dcp_nb_stages must be >= 1, got {args.dcp_nb_stages}")
    check_range("--nb_epochs_rat", args.nb_epochs_rat, 0.0, math.inf)
    if args.batch_size < 1 or args.accum_steps < 1 or args.batch_size % args.accum_steps:
        raise UserError(
            f"--batch_size {args.batch_size} must be >= 1 and divisible by --accum_steps {args.accum_steps}"
        )
    if args.bn_decay is not None:
        check_range("--bn_decay", args.bn_decay, 0.0, 1.0, high_open=True)
    if getattr(args, "image_size", 224) < 32:
        raise UserError(f"--image_size must be >= 32, got {args.image_size}")
    if args.tempr_dst <= 0:
        raise UserError(f"--tempr_dst must be > 0, got {args.tempr_dst}")


def family(args) -> str:
    return args.dcp_variant if args.resnet_def == "auto" else args.resnet_def


def strategy_for(args):
    from shared import tf_train

    if args.logical_cpus > 1:
        tf_train.use_logical_cpus(args.logical_cpus)
        return tf_train.make_strategy("mirrored")
    return tf_train.make_strategy("auto") if args.enbl_multi_gpu else tf_train.make_strategy("default")


def run(dataset: str, argv=None) -> int:
    args = build_parser(dataset).parse_args(argv)
    validate(args)
    from dcp_tf import runner  # TensorFlow loads here, after the flags are checked

    t0 = time.time()
    out = runner.main(args, dataset)
    print(f"({args.learner} {args.exec_mode} done in {time.time() - t0:.0f} s)", file=sys.stderr)
    return out
