"""Evaluate a checkpoint version of the chain (the original cifar10_eval.py, same flags and defaults).

    python -m ista_tf.cifar10_eval --checkpoint_version 2 --data_dir DIR
    ...
    total params: 177164
    2018-10-16 05:59:15.028371: precision @ 1 = 0.9116
    2018-10-16 05:59:15.028480: test loss = 0.2654

Version N is the compact model in <train_dir>_N (written at the end of stage N-1, from averaged
weights). "total params" is the original's count (kernels + batch-norm gamma, beta, moving mean and
variance) from the model's real shapes; precision @ 1 and the test loss (cross-entropy only) cover every
test image. --is_compressed=false evaluates the averaged weights of stage N's own training checkpoint
instead (how the original evaluates the unpruned net of version 0).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import tensorflow as tf

from ista_tf import chain, cli, flops, train
from ista_tf.models import build_model, full_arch
from shared import tf_train
from shared.errors import MalformedError, UserError, check_count, main_guard
from shared.paths import check_writable
from shared.results import make_record, write_record


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m ista_tf.cifar10_eval", description=__doc__, formatter_class=cli.HelpFormatter
    )
    p.add_argument("--checkpoint_version", type=int, default=1, help="version N to evaluate, in <train_dir>_N")
    p.add_argument(
        "--is_compressed",
        type=cli.str2bool,
        default=True,
        metavar="BOOL",
        help="true: the compact model of version N; false: the averaged weights of stage N's training "
        "checkpoint (e.g. the unpruned net with --checkpoint_version 0)",
    )
    p.add_argument(
        "--checkpoint_iter",
        type=int,
        default=-1,
        help="with --is_compressed=false: the training step to evaluate (-1: the newest checkpoint)",
    )
    p.add_argument(
        "--eval_data",
        default="test",
        choices=("test", "train_eval"),
        help="test images, or the training images without augmentation",
    )
    p.add_argument(
        "--num_examples",
        type=int,
        default=10000,
        help="evaluate the first N images (all of them when the split is smaller)",
    )
    cli.add_common_flags(p)
    return p


def load_version(train_dir, version: int, model_name: str, is_compressed: bool, checkpoint_iter: int = -1):
    """(model with the weights of version N, settings of the stage that produced them or None, lineage)."""
    here = chain.stage_dir(train_dir, version)
    if is_compressed:
        folder = chain.compact_dir(train_dir, version)
        if not folder.is_dir():
            hint = (
                " (version 0 is the unpruned start: evaluate it with --is_compressed=false)"
                if version == 0
                else f"; run cifar10_train --checkpoint_version {version - 1} first"
            )
            raise UserError(f"no compact model of version {version} in {folder}{hint}")
        model = build_model(chain.read_arch(folder, model_name))
        chain.restore_compact(model, folder)
        lineage = chain.read_lineage(folder)
        return model, (lineage[-1]["settings"] if lineage else None), lineage
    stage_file = here / "stage.json"
    if not stage_file.is_file():
        raise UserError(f"no training checkpoints of stage {version} in {here}")
    stage = chain.read_json(stage_file, "the stage settings")
    arch = stage.get("arch") or full_arch(model_name)
    if arch.get("model") != model_name:
        raise UserError(
            f"{here} holds a {arch.get('model')!r} model, but --model is {model_name!r}; "
            f"pass --model {arch.get('model')}"
        )
    model = build_model(arch)
    ema = tf_train.ExponentialMovingAverage(model.trainable_variables, train.MOVING_AVERAGE_DECAY)
    step = tf.Variable(0, dtype=tf.int64)
    ckpt_dir = here / "train"
    path = tf.train.latest_checkpoint(ckpt_dir) if checkpoint_iter < 0 else str(ckpt_dir / f"ckpt-{checkpoint_iter}")
    if path is None or not tf.io.gfile.exists(path + ".index"):
        which = "any" if checkpoint_iter < 0 else f"step {checkpoint_iter}"
        raise UserError(f"no training checkpoint ({which}) in {ckpt_dir}")
    try:
        tf.train.Checkpoint(model=model, ema=ema, step=step).restore(path).assert_existing_objects_matched()
    except (tf.errors.OpError, AssertionError, ValueError, IndexError, KeyError, TypeError) as err:
        raise MalformedError(
            f"cannot restore the training checkpoint {path} in {ckpt_dir}: it is damaged or incomplete "
            f"({chain.first_line(err)}); pick another with --checkpoint_iter"
        ) from err
    ema.copy_to(model.trainable_variables)
    lineage = chain.read_lineage(chain.compact_dir(train_dir, version))
    return model, stage.get("settings"), lineage


def run_eval(
    train_dir,
    version: int,
    model_name: str,
    split,
    *,
    is_compressed: bool = True,
    checkpoint_iter: int = -1,
    batch_size: int = 125,
    jit_compile: bool = False,
    records_dir=None,
    log=print,
) -> dict:
    """Evaluate version N on `split`; print the original's three lines; optionally write a run record."""
    model, producer, lineage = load_version(train_dir, version, model_name, is_compressed, checkpoint_iter)
    counts = flops.count(model)
    log(f"total params: {counts.params}")
    result = train.evaluate(model, split, batch_size, jit_compile=jit_compile)
    log(f"{train.now()}: precision @ 1 = {result['precision_at_1']:.4f}")
    log(f"{train.now()}: test loss = {result['test_loss']:.4f}")
    summary = {**result, "params": counts.params, "macs": counts.macs, "widths": list(model.widths)}
    if records_dir:
        record = eval_record(train_dir, version, model_name, is_compressed, summary, producer, lineage, split)
        log(f"run record: {write_record(record, records_dir)}")
    return summary


def eval_record(
    train_dir,
    version: int,
    model_name: str,
    is_compressed: bool,
    summary: dict,
    producer: dict | None,
    lineage: list[dict],
    split,
) -> dict:
    """Filed under the README's v2/v3 rows, or the paper's model A/B rows (`chain.reported_row`); kind
    'reproduction' only for the compact model of that row's chain run in full, trained and tested on the
    full CIFAR-10; otherwise 'smoke'."""
    full = flops.count(build_model(full_arch(model_name)))
    producer = producer or train.StageConfig(model=model_name).settings()
    row = chain.reported_row(model_name, version, lineage) if is_compressed else None
    reproduction = (
        chain.chain_matches(row, lineage)
        and len(lineage) == version
        and is_compressed
        and split.name == "cifar10"
        and split.split == "test"
        and len(split) == chain.FULL_CIFAR10["test"]
    )
    return make_record(
        paper="ista",
        row=row,
        kind="reproduction" if reproduction else "smoke",
        metrics={
            "top1": 100.0 * summary["precision_at_1"],
            "test_loss": summary["test_loss"],
            "params": summary["params"],
            "params_reduction_pct": 100.0 * (1 - summary["params"] / full.params),
            "macs": summary["macs"],
            "macs_reduction_pct": 100.0 * (1 - summary["macs"] / full.macs),
        },
        data=split.identity(),
        variant=train.record_variant(producer, version=version),
        convention=flops.CONVENTION,
        seed=producer.get("seed"),
        config={
            "checkpoint_version": version,
            "is_compressed": is_compressed,
            "widths": summary["widths"],
            "lineage": lineage,
        },
        frameworks=("tensorflow",),
        device=tf_train.device_kind(),
        run_dir=str(chain.stage_dir(train_dir, version)),
    )


def default_records_dir(train_dir, version: int) -> Path:
    """Where an evaluation writes its run record unless --records is given: in the evaluated version's
    folder (`python -m shared.results check --records <folder above the train dir>` finds it)."""
    return chain.stage_dir(train_dir, version) / "records"


@main_guard
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    check_count("--checkpoint_version", args.checkpoint_version, 0)
    check_count("--batch_size", args.batch_size, 1)
    check_count("--num_examples", args.num_examples, 1)
    check_count("--checkpoint_iter", args.checkpoint_iter, -1)
    stage = chain.stage_dir(args.train_dir, args.checkpoint_version)
    if stage.exists() and not stage.is_dir():
        raise UserError(f"--train_dir {args.train_dir}: {stage} is a file, not a stage folder")
    # the record is written after the evaluation: prove first that it can be
    records = args.records or default_records_dir(args.train_dir, args.checkpoint_version)
    if stage.is_dir():
        check_writable(Path(records) / "ista", "run record")
    split = cli.load_split(args.dataset, "train" if args.eval_data == "train_eval" else "test", args.data_dir)
    split = split.subset(min(args.num_examples, len(split)))
    run_eval(
        args.train_dir,
        args.checkpoint_version,
        args.model,
        split,
        is_compressed=args.is_compressed,
        checkpoint_iter=args.checkpoint_iter,
        batch_size=args.batch_size,
        jit_compile=train.use_xla(args.xla),
        records_dir=records,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
