"""Speed that is real, side by side in one run (`python -m ekg_tf2.bench`, `make ekg-bench`).

1. Inference of the slimmed ResNet-56 at the README target (<= 45 % of the FLOPs kept by EKG's
   counter) against the dense ResNet-56, each under every runtime at hand (`shared.tf_export.runtimes`:
   tf.function, XLA, TFLite through LiteRT, ONNX through onnxruntime), batch 128 and 1, fp32, CPU (and
   GPU through tf.function/XLA when TensorFlow sees one). Headline = best slimmed / best dense; target
   >= 0.8 x the counted FLOPs ratio. The slimmed widths come from `--slimmed` (a slimmed_params.pkl of
   a real search) or, by default, every group narrowed by one common factor until the counter says
   <= 45 % kept (a stand-in of the same FLOPs; a real search prunes unevenly).
2. One fine-tuning step (batch 128) of the slimmed network with and without XLA.
3. The search cost: seconds per search iteration of the authors' ResNet-56 on a D^val of 320 images
   (random stand-ins when no data/checkpoint is given), and, from `--search_json` (a run's
   search.json), that run's iterations to the target and seconds per iteration.

Timings come from `shared.bench` (rotating rounds, warm-up incl. compilation, medians with IQR spread
and the machine load). On a machine other jobs share the numbers are noisy: read the load line.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from ekg_tf2 import params
from ekg_tf2.flops import count
from ekg_tf2.models import build_model
from ekg_tf2.models.folded import FoldedResNet
from ekg_tf2.search import EKGSearch, SearchConfig
from ekg_tf2.train import FinetuneConfig, FineTuner
from shared import bench, tf_export, tf_train
from shared.errors import main_guard
from shared.paths import checkpoint_root, data_root

TARGET = 0.8
DENSE, SLIM = "dense", "slimmed"


def uniform_widths(arch: str, dataset: str, rate: float) -> dict[str, int]:
    """Group widths ceil(C * s) with the largest s whose network keeps <= rate of the FLOPs."""
    dense = build_model(arch, dataset)
    full = count(dense).macs
    lo, hi = 0.05, 1.0
    for _ in range(30):
        s = (lo + hi) / 2
        kept = {g: max(1, math.ceil(c * s)) for g, c in dense.widths.items()}
        dense.attach_gates()
        lo, hi = (s, hi) if count(dense, kept=kept).macs <= rate * full else (lo, s)
    return {g: max(1, math.ceil(c * lo)) for g, c in dense.widths.items()}


def padded_flops_ratio(dense, slim, lanes: int = 8) -> float:
    """Dense / slimmed FLOPs with every width rounded up to a multiple of `lanes`: CPU conv kernels
    (oneDNN, XNNPACK) compute channels in vector blocks of 8-16 floats, so a width of 11 costs what
    16 does; this ratio, not the counted one, bounds the speed-up such kernels can show."""
    widths = {g: lanes * math.ceil(w / lanes) for g, w in slim.widths.items()}
    full = {g: lanes * math.ceil(w / lanes) for g, w in dense.widths.items()}
    return count(build_model(dense.arch, "CIFAR10", full)).macs / count(build_model(slim.arch, "CIFAR10", widths)).macs


def inference(models: dict, batch: int, rounds: int, threads: int, workdir: Path, names) -> dict:
    """Each network exported with its BNs folded into the convs (`FoldedResNet`, the same for dense and
    slimmed) under every runtime of `shared.tf_export`; outputs checked against the unfolded network."""
    example = np.zeros([1, 32, 32, 3], np.float32)
    folded = {kind: FoldedResNet(m) for kind, m in models.items()}
    fns = tf_export.runtimes_for_models(
        folded, example, names=names, threads=threads, workdir=workdir, log=lambda line: print(f"  {line}")
    )
    images = np.random.RandomState(0).normal(size=[batch, 32, 32, 3]).astype(np.float32)
    for kind, model in models.items():
        ref = model(tf.constant(images), training=False).numpy()
        for name, fn in fns.items():
            if name.startswith(kind + " "):
                diff = float(np.abs(fn(images) - ref).max())
                if diff > 1e-3:
                    raise RuntimeError(f"{name}: folded export differs from the network by {diff:.2g}")
    times = bench.time_paired({k: (lambda f=f: f(images)) for k, f in fns.items()}, reps=rounds, warmup=2)
    macs = {k: count(m).macs for k, m in models.items()}
    ratio = macs[DENSE] / macs[SLIM]
    head = bench.headline(times, [k for k in times if k.startswith(DENSE)], [k for k in times if k.startswith(SLIM)])
    return {
        "times": times,
        "flops_ratio": ratio,
        "headline": head,
        "verdict": bench.verdict(head.speedup, TARGET * ratio, head.paired, flops_ratio=ratio),
    }


def xla_step(model, batch: int, rounds: int) -> dict:
    x = tf.random.stateless_normal([batch, 32, 32, 3], seed=(1, 0))
    y = tf.random.stateless_uniform([batch], seed=(1, 1), maxval=10, dtype=tf.int32)
    fns = {}
    for jit in (False, True):
        m = params.model_from_params(model.arch, "CIFAR10", params.model_params(model))
        tuner = FineTuner(m, tf.distribute.get_strategy(), FinetuneConfig(batch_size=batch), jit)
        fns["xla" if jit else "no_xla"] = lambda t=tuner: t.step(x, y)["loss"].numpy()
    times = bench.time_paired(fns, reps=rounds, warmup=1)
    return {"times": times, "paired": bench.paired_ratio(times["no_xla"], times["xla"])}


def search_cost(iterations: int, data_dir: str | None, ckpt: Path | None) -> dict:
    from ekg_tf2 import data

    if ckpt is not None and ckpt.is_file():
        model = params.load_model("ResNet-56", "CIFAR10", ckpt)
        source = str(ckpt)
    else:
        model, source = build_model("ResNet-56", "CIFAR10"), "random weights"
    if data_root(data_dir) is not None:
        train = data.load_split("CIFAR10", "train", data_dir)
        _, val = data.search_subsets(train.labels)
        x, y = data.normalize(train.images[val], "CIFAR10").numpy(), train.labels[val]
    else:
        x = np.random.RandomState(0).normal(size=[320, 32, 32, 3]).astype(np.float32)
        y = np.arange(320) % 10
    s = EKGSearch(model, tf.distribute.get_strategy(), x, y, SearchConfig(0.45), log=lambda m: None)
    t0 = time.time()
    s.start()
    first = time.time() - t0
    infos = [s.step() for _ in range(iterations)]
    return {
        "source": source,
        "d_val": len(y),
        "start_s": first,
        "seconds": [i["seconds"] for i in infos],
        "evaluated": [i["evaluated"] for i in infos],
    }


def _fmt_stats(st) -> str:
    return f"{st.median:.2f}x (IQR {st.q1:.2f}-{st.q3:.2f})"


@main_guard
def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m ekg_tf2.bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--slimmed", default=None, help="slimmed_params.pkl of a ResNet-56 search (default: uniform widths)")
    p.add_argument("--rate", type=float, default=0.45, help="FLOPs kept by the default uniform widths")
    p.add_argument("--batches", type=int, nargs="+", default=[128, 1])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runtimes", nargs="+", default=["tf.function", "xla", "tflite", "onnxruntime"])
    p.add_argument("--search_iterations", type=int, default=2, help="search iterations to time (0: skip)")
    p.add_argument("--search_json", default=None, help="search.json of a finished run, to quote its cost")
    p.add_argument("--data_dir", default=None)
    p.add_argument("--skip_xla_step", action="store_true")
    args = p.parse_args(argv)
    tf_export.set_threads(args.threads)
    print(f"ekg_tf2 bench on {tf_train.device_kind()}, {args.threads} threads; {bench.describe_load()}")
    dense = build_model("ResNet-56", "CIFAR10")
    if args.slimmed:
        slim = params.load_model("ResNet-56", "CIFAR10", args.slimmed)
        how = args.slimmed
    else:
        slim = build_model("ResNet-56", "CIFAR10", uniform_widths("ResNet-56", "CIFAR10", args.rate))
        how = f"uniform widths at <= {args.rate:.2f} kept"
    models = {DENSE: dense, SLIM: slim}
    c_dense, c_slim = count(dense), count(slim)
    print(
        f"ResNet-56: dense {c_dense.macs / 1e6:.2f} M FLOPs, slimmed ({how}) {c_slim.macs / 1e6:.2f} M "
        f"= {100 * c_slim.macs / c_dense.macs:.1f} % kept (EKG's counter); "
        f"FLOPs ratio {c_dense.macs / c_slim.macs:.2f}; "
        f"with widths rounded up to multiples of 8 / 16 (the kernels' vector blocks) "
        f"{padded_flops_ratio(dense, slim, 8):.2f} / {padded_flops_ratio(dense, slim, 16):.2f}"
    )
    with tempfile.TemporaryDirectory() as work:
        for batch in args.batches:
            r = inference(models, batch, args.rounds, args.threads, Path(work) / f"b{batch}", args.runtimes)
            print(bench.format_table(r["times"], batch, title=f"inference, batch {batch}, fp32"))
            h = r["headline"]
            print(
                f"batch {batch}: best dense = {h.best_dense}, best slimmed = {h.best_pruned}: speed-up "
                f"{h.speedup:.2f}x, paired {_fmt_stats(h.paired)}; target >= {TARGET} x {r['flops_ratio']:.2f} = "
                f"{TARGET * r['flops_ratio']:.2f}x: {r['verdict'].status} ({r['verdict'].text})"
            )
    if not args.skip_xla_step:
        r = xla_step(slim, 128, max(3, args.rounds // 2))
        print(bench.format_table(r["times"], 128, title="fine-tuning step of the slimmed ResNet-56, batch 128"))
        print(f"XLA vs no XLA (t_no_xla / t_xla, paired): {_fmt_stats(r['paired'])}")
    if args.search_iterations > 0:
        ckpt = checkpoint_root()
        r = search_cost(args.search_iterations, args.data_dir, ckpt / "ekg" / "res56_cifar10.pkl" if ckpt else None)
        print(
            f"search cost ({r['source']}, D^val {r['d_val']} images): T_0 + history {r['start_s']:.1f} s; "
            f"iterations {', '.join(f'{s:.1f}' for s in r['seconds'])} s (first includes tracing), "
            f"{r['evaluated']} candidates evaluated"
        )
    if args.search_json:
        s = json.loads(Path(args.search_json).read_text())
        print(
            f"search of {args.search_json}: {s['iterations']} iterations to {100 * s['flops_rate']:.2f} % kept, "
            f"{s['seconds_per_iteration']:.1f} s per iteration, {s['seconds_search']:.0f} s in all"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
