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


def build_parser(dataset: str) -> argparse.ArgumentParser:
    h = MODEL_DEFAULTS[dataset]
    prog = f"python -m dcp_tf.resnet_at_{dataset}_run"
    p = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=HelpFormatter)

    g = p.add_argument_group("PocketFlow run flags (nets/*_run.py, abstract_learner.py)")
    g.add_argument(
        "--learner",
        default="full-prec",
        choices=("full-prec", "dis-chn-pruned"),
        help="full-prec: train the baseline into save_path; dis-chn-pruned: DCP from it",
    )
    g.add_argument("--exec_mode", default="train", choices=("train", "eval"), help="train, or evaluate a saved model")
    g.add_argument(
        "--enbl_multi_gpu",
        type=str2bool,
        nargs="?",
        const=True,
        default=False,
        help="data-parallel on every GPU (tf.distribute.MirroredStrategy in Horovod's place; "
        "MultiWorkerMirroredStrategy when TF_CONFIG names several workers); iterations / replicas",
    )
    g.add_argument("--log_dir", default="./logs", help="TensorBoard summaries and metrics.jsonl")
    g.add_argument("--save_path", default="./models/model.ckpt", help="the pre-trained (full-prec) model")
    g.add_argument("--save_path_eval", default="./models_eval/model.ckpt", help="full-prec model for evaluation")
    g.add_argument("--summ_step", type=int, default=100, help="log every N steps")
    g.add_argument("--save_step", type=int, default=10000, help="checkpoint every N steps")
    g.add_argument(
        "--enbl_dst",
        type=str2bool,
        nargs="?",
        const=True,
        default=False,
        help="distillation from the pre-trained model in DCP's final fine-tuning",
    )
    g.add_argument("--loss_w_dst", type=float, default=4.0, help="distillation loss weight")
    g.add_argument("--tempr_dst", type=float, default=4.0, help="distillation temperature (no T^2 factor)")
    g.add_argument("--debug", type=str2bool, nargs="?", const=True, default=False, help="log every step")

    g = p.add_argument_group("DCP flags (learners/discr_channel_pruning/learner.py)")
    g.add_argument(
        "--dcp_save_path",
        default="./models_dcp/model.ckpt",
        help="training checkpoints of the DCP run (masks, aux heads, optimisers, progress: resumable)",
    )
    g.add_argument(
        "--dcp_save_path_eval",
        default="./models_dcp_eval/model.ckpt",
        help="the pruned model for evaluation and its slimmed export (SavedModel, TFLite)",
    )
    g.add_argument(
        "--dcp_prune_ratio",
        type=float,
        default=0.5,
        help="fraction of input channels removed from each pruned conv: keeps c - floor(ratio c)",
    )
    g.add_argument("--dcp_nb_stages", type=int, default=3, help="P, the number of discrimination-aware losses")
    g.add_argument("--dcp_lrn_rate_adam", type=float, default=1e-3, help="Adam lr of block/layer fine-tuning")
    g.add_argument("--dcp_nb_iters_block", type=int, default=10000, help="block-wise fine-tuning iterations")
    g.add_argument(
        "--dcp_nb_iters_layer",
        type=int,
        default=500,
        help="layer-wise fine-tuning iterations after each channel addition",
    )
    g.add_argument(
        "--dcp_variant",
        default="pocketflow",
        choices=("pocketflow", "paper"),
        help="pocketflow: PocketFlow's learner; paper: the authors' 2018 code (the paper's tables)",
    )
    g.add_argument(
        "--dcp_paper_stage_epochs",
        type=float,
        default=h["paper_stage_epochs"],
        help="paper: epochs of stage fine-tuning (x0.1 at 40 %% and 60 %%)",
    )
    g.add_argument(
        "--dcp_paper_select_samples",
        type=int,
        default=h["paper_select_samples"],
        help="paper: images the channel scores are accumulated over (-1: the whole training set)",
    )
    g.add_argument(
        "--dcp_paper_final_epochs",
        type=float,
        default=h["paper_final_epochs"],
        help="paper: epochs of the final fine-tuning",
    )
    g.add_argument("--dcp_save_every_picks", type=int, default=1, help="checkpoint after every N channel additions")

    g = p.add_argument_group(f"ModelHelper flags (nets/resnet_at_{dataset}.py)")
    g.add_argument("--resnet_size", type=int, default=h["resnet_size"], help="ResNet depth")
    g.add_argument(
        "--resnet_def",
        default="auto",
        choices=("auto", "pocketflow", "paper"),
        help="network: PocketFlow's ResNet or the paper's PreResNet (auto: that of --dcp_variant)",
    )
    g.add_argument("--batch_size", type=int, default=h["batch_size"], help="batch size per replica")
    g.add_argument("--batch_size_eval", type=int, default=100, help="evaluation batch size")
    g.add_argument("--lrn_rate_init", type=float, default=0.1, help="initial lr (x global batch / batch_size_norm)")
    g.add_argument("--batch_size_norm", type=int, default=h["batch_size_norm"], help="lr normalising batch")
    g.add_argument("--momentum", type=float, default=0.9, help="momentum coefficient")
    g.add_argument("--loss_w_dcy", type=float, default=h["loss_w_dcy"], help="weight decay of non-BN variables")
    g.add_argument("--nb_epochs_rat", type=float, default=1.0, help="scales the number of training epochs")

    g = p.add_argument_group("extras")
    g.add_argument(
        "--data_dir",
        default=None,
        help="CIFAR-10 folder (cifar-10-batches-bin or -py) or ImageNet; default $PRUNING_DATA_DIR",
    )
    g.add_argument(
        "--dataset_name",
        default=dataset,
        choices=(dataset, "digits") if dataset == "cifar10" else (dataset,),
        help="digits: the embedded scikit-learn digits shaped like CIFAR (demo, tests)",
    )
    g.add_argument("--nb_iters_train", type=int, default=0, help="full-prec: steps instead of the epoch schedule")
    g.add_argument("--seed", type=int, default=0, help="seed of initialisation and data order")
    g.add_argument(
        "--logical_cpus",
        type=int,
        default=0,
        help="split the CPU into N devices and mirror over them (tests tf.distribute on a CPU)",
    )
    g.add_argument("--accum_steps", type=int, default=1, help="gradient accumulation micro-batches per step")
    g.add_argument("--xla", type=str2bool, nargs="?", const=True, default=False, help="jit_compile the steps")
    g.add_argument(
        "--bn_decay",
        type=float,
        default=None,
        help="BN moving-average decay for short runs (default: the network's, 0.997 / 0.9)",
    )
    g.add_argument("--records", default=None, help="folder for the run record (default: none)")
    g.add_argument("--no_export", action="store_true", help="skip the SavedModel/TFLite export")
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
