"""Train one stage of the ISTA chain (the original cifar10_train.py, same flags and defaults).

The README chain (ResNet-20, model A of the paper), each command one stage:

    python -m ista_tf.cifar10_train --l1_penalty 0.001 --max_steps 30000 --checkpoint_version 0 --data_dir DIR
    python -m ista_tf.cifar10_train --l1_penalty 0.005 --max_steps 50000 --checkpoint_version 1 --data_dir DIR
    python -m ista_tf.cifar10_train --checkpoint_version 2 --l1_penalty 0.0 --max_steps 50000 \\
        --learning_rate 0.01 --data_dir DIR

Stage V reads the compact model in <train_dir>_V (written by stage V-1; version 0 starts from scratch),
trains --max_steps steps of plain SGD plus the ISTA proximal step on the batch-norm scales, removes
the channels whose scale is exactly zero and writes the compact model to <train_dir>_{V+1}. An
interrupted stage resumes from its last checkpoint when the same command is run again; rerunning a
finished stage with the same flags prints so and exits 0 (other flags: an error, nothing overwritten).
"""

from __future__ import annotations

import argparse
import sys

from ista_tf import cli, prune, train
from shared import tf_train
from shared.errors import check_count, main_guard


def build_parser() -> argparse.ArgumentParser:
    d = train.StageConfig()
    p = argparse.ArgumentParser(
        prog="python -m ista_tf.cifar10_train", description=__doc__, formatter_class=cli.HelpFormatter
    )
    p.add_argument(
        "--checkpoint_version",
        type=int,
        default=0,
        help="stage V to train: reads <train_dir>_V, writes the compact model to <train_dir>_{V+1}",
    )
    p.add_argument(
        "--l1_penalty",
        type=float,
        default=d.l1_penalty,
        help="rho, the global ISTA penalty; per step a scale shrinks by lr * rho * lambda_l (0: plain SGD)",
    )
    p.add_argument("--max_steps", type=int, default=d.max_steps, help="updates in this stage (the step restarts at 0)")
    p.add_argument(
        "--learning_rate",
        type=float,
        default=d.learning_rate,
        help="initial learning rate of plain SGD (x0.1 every 350 epochs of 50,000 images)",
    )
    p.add_argument(
        "--weight_decay",
        type=float,
        default=d.weight_decay,
        help="L2 weight decay on the conv kernels of resnet20 (cnn4 has none, as in the original)",
    )
    p.add_argument(
        "--log_frequency",
        type=int,
        default=d.log_frequency,
        help="print loss, group lasso, fake sparsity and examples/sec every N steps",
    )
    p.add_argument(
        "--squeeze_model",
        type=cli.str2bool,
        default=d.squeeze_model,
        metavar="BOOL",
        help="remove zero-scale channels at the end (false: the next version is the averaged, unpruned model)",
    )
    cli.add_common_flags(p)
    p.add_argument(
        "--fold",
        default=d.fold,
        choices=prune.FOLDS,
        help="released-code: pruned channels are dropped (the released code's fold never fires); "
        "paper: their constant output is folded into the next batch norm's moving mean",
    )
    p.add_argument(
        "--alpha",
        type=float,
        default=d.alpha,
        help="paper's gamma-W rescaling: train with gamma*alpha, W_next/alpha (1: off, as for CIFAR)",
    )
    p.add_argument(
        "--bn_decay",
        type=float,
        default=d.bn_decay,
        help="decay of the batch-norm moving statistics (slim's 0.999; a run of a few hundred steps "
        "needs ~0.9 for usable statistics at evaluation)",
    )
    p.add_argument(
        "--accum_steps",
        type=int,
        default=d.accum_steps,
        help="gradient accumulation: each update sums this many micro-batches of batch_size/accum_steps",
    )
    p.add_argument(
        "--distribute",
        default=d.distribute,
        choices=tf_train.STRATEGIES,
        help="tf.distribute: auto (several GPUs: mirrored; TF_CONFIG with workers: multiworker), "
        "default (one device), mirrored, multiworker",
    )
    p.add_argument(
        "--precision",
        default=d.precision,
        choices=tf_train.PRECISIONS,
        help="float32 (as the original), mixed_bfloat16, or auto (bf16 on a GPU)",
    )
    p.add_argument("--seed", type=int, default=d.seed, help="seed of the initial weights and the data order")
    p.add_argument(
        "--save_checkpoint_steps",
        type=int,
        default=d.save_checkpoint_steps,
        help="also save a checkpoint every N steps (0: by time only)",
    )
    p.add_argument(
        "--save_checkpoint_secs",
        type=float,
        default=d.save_checkpoint_secs,
        help="save a checkpoint every N seconds (MonitoredTrainingSession's default)",
    )
    return p


@main_guard
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    cfg = train.StageConfig(
        model=args.model,
        l1_penalty=args.l1_penalty,
        max_steps=args.max_steps,
        learning_rate=args.learning_rate,
        batch_size=args.batch_size,
        weight_decay=args.weight_decay,
        alpha=args.alpha,
        fold=args.fold,
        squeeze_model=args.squeeze_model,
        bn_decay=args.bn_decay,
        seed=args.seed,
        accum_steps=args.accum_steps,
        xla=args.xla,
        distribute=args.distribute,
        precision=args.precision,
        log_frequency=args.log_frequency,
        save_checkpoint_steps=args.save_checkpoint_steps,
        save_checkpoint_secs=args.save_checkpoint_secs,
    )
    cfg.validate()  # bad flags fail before the data is read (and before anything is written)
    check_count("--checkpoint_version", args.checkpoint_version, 0)
    train_split = cli.load_split(args.dataset, "train", args.data_dir)
    train.run_stage(cfg, args.train_dir, args.checkpoint_version, train_split, records_dir=args.records)
    return 0


if __name__ == "__main__":
    sys.exit(main())
