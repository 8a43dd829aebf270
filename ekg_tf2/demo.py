"""Demo stage of `make demo`: EKG end to end, small.

    python -m ekg_tf2.demo [--data-dir DIR] --out DIR [--records DIR]

With CIFAR-10 (--data-dir or $PRUNING_DATA_DIR) and the authors' checkpoint folder
($PRUNING_CHECKPOINT_DIR holding ekg/res56_cifar10.pkl): the authors' ResNet-56, a search to 80 % of
its FLOPs on a D^val of 1 image per class with --search_step 1.0, the memory bank, slimming and a few
fine-tuning steps.
Otherwise: a small CIFAR ResNet (ResNet-8) pre-trained for a few hundred steps on the demo data (the
embedded digits, or CIFAR-10), searched to 60 % of its FLOPs and fine-tuned briefly. Prints the FLOPs
kept, the accuracy before and after, and the slimmed network's measured speed next to the dense one's.
About a minute on 2 CPU cores; smoke numbers, never compared with the paper (scripts/ekg/ runs it at
full size).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import tensorflow as tf

from ekg_tf2 import data, params, pruning, train
from ekg_tf2.models import ResNet
from ekg_tf2.models.folded import FoldedResNet
from shared import tf_train
from shared.errors import main_guard
from shared.paths import checkpoint_root, data_root


def _speed(model, reps: int = 5) -> float:
    """Median seconds of one batch of 128 through a tf.function of the model (warm)."""
    fn = tf.function(lambda x: model(x, training=False))
    x = tf.zeros([128, 32, 32, 3])
    fn(x).numpy()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn(x).numpy()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


@main_guard
def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m ekg_tf2.demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--data-dir", default=None, help="CIFAR-10 folder (default $PRUNING_DATA_DIR; else digits)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--records", default=None, help="folder for the smoke run records")
    args = p.parse_args(argv)
    out = Path(args.out)
    t0 = time.time()
    quiet = lambda s: None  # noqa: E731
    have_data = data_root(args.data_dir) is not None
    ckpt = checkpoint_root()
    authors = ckpt / "ekg" / "res56_cifar10.pkl" if ckpt else None
    common = ["--xla", "off", "--train_limit", "128", "--test_limit", "256"]
    if have_data:
        common += ["--data_dir", str(data_root(args.data_dir))]
    records = ["--records", args.records] if args.records else []
    # the stages run their functions eagerly, the search's passes traced: smoke-sized, every other
    # function is called a few times, and tracing a ResNet-56 step costs more than running it
    with tf_train.functions_run_eagerly(True):
        if have_data and authors is not None and authors.is_file():
            arch, dataset, start, target, steps = "ResNet-56", "CIFAR10", authors, 0.8, 5
            # --search_step 1.0 (the original's flag): an inner conv drops to one channel per step, so a
            # handful of iterations reach the target
            search = ["--val_per_class", "1", "--subset_per_class", "1", "--search_batch_size", "10"]
            search += ["--search_step", "1.0"]
            print(f"EKG demo: the authors' ResNet-56 ({authors}) on CIFAR-10, search to {target:.0%} of its FLOPs")
        else:
            arch, dataset, target, steps = "ResNet-8", "CIFAR10" if have_data else "digits", 0.6, 20
            search = ["--val_per_class", "8", "--subset_per_class", "16", "--search_batch_size", "80"]
            print(f"EKG demo: ResNet-8 pre-trained here on {dataset}, search to {target:.0%} of its FLOPs")
            start = out / "pretrain" / "init_params.pkl"
            if not (out / "pretrain" / "finetune.json").is_file():
                params.write_params(start, params.model_params(ResNet(arch, 10, seed=0)))
            where = ["--trained_param", str(start), "--train_path", str(out / "pretrain")]
            pre = train.build_parser().parse_args(
                ["--arch", arch, "--dataset", dataset]
                + where
                + ["--train_epoch", "4", "--steps_per_epoch", "60", "--batch_size", "32", "--learning_rate", "0.1"]
                + common
            )
            with tf_train.functions_run_eagerly(False):  # 240 steps: tracing pays
                train.run(pre, log=quiet)
            start = out / "pretrain" / "trained_params.pkl"
        base = ["--arch", arch, "--dataset", dataset] + common + records
        test_split = data.limited(data.load_split(dataset, "test", args.data_dir), 256)
        dense = params.load_model(arch, dataset, start)
        before = train.evaluate(dense, test_split.images, test_split.labels, dataset, "moving-average")["top1"]
        s_args = pruning.build_parser().parse_args(
            base
            + search
            + ["--search_target_rate", str(target), "--trained_param", str(start)]
            + ["--train_path", str(out / "search")]
        )
        s = pruning.run_search_stage(s_args, log=quiet)
        rows = []
        for knowledge in (False, True):
            f_args = train.build_parser().parse_args(
                base
                + ["--trained_param", str(out / "search" / "slimmed_params.pkl")]
                + ["--train_path", str(out / ("finetune_kd" if knowledge else "finetune"))]
                + ["--train_epoch", "1", "--max_steps", str(steps), "--batch_size", "32", "--learning_rate", "0.01"]
                + (["--Knowledge"] if knowledge else [])
            )
            r = train.run(f_args, log=quiet)
            rows.append(("memory bank (--Knowledge)" if knowledge else "no KD (README default)", r["top1"]))
    slim = params.load_model(arch, dataset, out / "search" / "slimmed_params.pkl")
    t_dense, t_slim = _speed(FoldedResNet(dense)), _speed(FoldedResNet(slim))
    print(
        f"search: {s['iterations']} iterations, {100 * s['flops_rate']:.1f} % of the FLOPs kept "
        f"({s['flops'] / 1e6:.2f} M of {s['ori_flops'] / 1e6:.2f} M, EKG's counter), "
        f"{s['params'] / 1e3:.1f} k of {s['ori_params'] / 1e3:.1f} k params"
    )
    print(
        f"test top-1 on {len(test_split)} images: dense {before:.2f} %, pruned before fine-tuning "
        f"{s['test_top1_moving_average']:.2f} %, " + ", ".join(f"after {steps} steps {n}: {a:.2f} %" for n, a in rows)
    )
    print(
        f"speed, batch 128, tf.function on CPU, BNs folded: dense {1e3 * t_dense:.1f} ms, "
        f"slimmed {1e3 * t_slim:.1f} ms = {t_dense / t_slim:.2f}x "
        f"(FLOPs ratio {s['ori_flops'] / s['flops']:.2f}x; single runs, noisy)"
    )
    print(f"(ekg_tf2 demo: {time.time() - t0:.0f} s; smoke numbers, not the paper's; scripts/ekg/ for full runs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
