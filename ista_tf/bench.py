"""Speed that is real: in one run, side by side (`python -m ista_tf.bench`, `make ista-bench`).

1. Inference throughput of a compressed model against the uncompressed one (batch 128, fp32, eval
   mode; on the CPU, and on the GPU when TensorFlow sees one). The compressed model is physically
   smaller (smaller kernels, not masks), so its speed-up should follow its FLOPs reduction:
   target speed-up >= 0.7 x (full MACs / compressed MACs).
2. One ISTA training step with XLA against the same step without XLA (resnet20, batch 125).
   Target: XLA not slower.

Timings are medians over rounds that alternate the two contenders (ABAB...), after warm-up calls that
include compilation. The default compressed widths keep half of every prunable layer; pass --widths to
time another pattern (e.g. the widths a real run printed).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import tensorflow as tf

from ista_tf import flops
from ista_tf.models import MODELS, build_model, full_arch
from ista_tf.train import IstaTrainer, StageConfig
from shared import tf_train
from shared.errors import UserError, main_guard


def _median_seconds(fns: dict, rounds: int, warmup: int) -> dict[str, float]:
    """Median wall time of each zero-argument callable, the callables alternating within each round."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}


def inference(model_name: str, widths: list[int], device: str, batch: int, rounds: int, warmup: int) -> dict:
    with tf.device(device):
        models = {
            "full": build_model(full_arch(model_name)),
            "compressed": build_model({"model": model_name, "widths": widths}),
        }
        images = tf.random.stateless_normal([batch, 32, 32, 3], seed=(0, 0))
        fns = {}
        for name, model in models.items():
            forward = tf_train.compile_fn(lambda x, m=model: m(x, training=False), jit_compile=False)
            fns[name] = lambda f=forward: f(images).numpy()
        seconds = _median_seconds(fns, rounds, warmup)
    counts = {name: flops.count(m) for name, m in models.items()}
    flops_ratio = counts["full"].macs / counts["compressed"].macs
    speedup = seconds["full"] / seconds["compressed"]
    return {
        "model": model_name,
        "device": device,
        "widths": widths,
        "macs": {k: c.macs for k, c in counts.items()},
        "params": {k: c.params for k, c in counts.items()},
        "seconds": seconds,
        "images_per_sec": {k: batch / s for k, s in seconds.items()},
        "flops_ratio": flops_ratio,
        "speedup": speedup,
        "target": 0.7 * flops_ratio,
        "met": speedup >= 0.7 * flops_ratio,
    }


def train_step(model_name: str, device: str, batch: int, rounds: int, warmup: int) -> dict:
    with tf.device(device):
        images = tf.random.stateless_normal([batch, 32, 32, 3], seed=(1, 0))
        labels = tf.random.stateless_uniform([batch], seed=(1, 1), maxval=10, dtype=tf.int32)
        fns = {}
        for name, jit in (("no_xla", False), ("xla", True)):
            model = build_model(full_arch(model_name))
            trainer = IstaTrainer(
                model,
                tf.distribute.get_strategy(),
                StageConfig(model=model_name, l1_penalty=0.005, batch_size=batch),
                jit,
            )
            fns[name] = lambda t=trainer: t.step(images, labels)["loss"].numpy()
        seconds = _median_seconds(fns, rounds, warmup)
    return {
        "model": model_name,
        "device": device,
        "batch": batch,
        "seconds": seconds,
        "xla_speedup": seconds["no_xla"] / seconds["xla"],
        "met": seconds["xla"] <= seconds["no_xla"],
    }


def default_widths(model_name: str) -> list[int]:
    return [max(1, w // 2) for w in MODELS[model_name].full_widths]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m ista_tf.bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--models", default="resnet20,cnn4", help="comma-separated models for the inference comparison"
    )
    p.add_argument(
        "--widths",
        default=None,
        help="compressed widths of the first model, comma-separated (default: half of every layer)",
    )
    p.add_argument("--batch", type=int, default=128, help="inference batch")
    p.add_argument("--train_batch", type=int, default=125, help="training batch (the original's)")
    p.add_argument("--rounds", type=int, default=15, help="timed rounds per contender")
    p.add_argument("--warmup", type=int, default=3, help="untimed calls per contender (compilation included)")
    return p


@main_guard
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in names if m not in MODELS]
    if unknown or not names:
        raise UserError(f"unknown model(s) {unknown}; expected a comma-separated subset of {sorted(MODELS)}")
    devices = ["/CPU:0"] + (["/GPU:0"] if tf.config.list_physical_devices("GPU") else [])
    print(
        f"ista_tf bench: TensorFlow {tf.__version__}, fp32, devices {devices}, medians of {args.rounds} "
        "alternating rounds after warm-up"
    )
    lines = []
    for device in devices:
        for i, name in enumerate(names):
            widths = default_widths(name)
            if args.widths and i == 0:
                widths = [int(w) for w in args.widths.split(",")]
            r = inference(name, widths, device, args.batch, args.rounds, args.warmup)
            print(
                f"[inference {name} {device} batch {args.batch}] widths {r['widths']}: "
                f"full {r['images_per_sec']['full']:.0f} img/s ({r['macs']['full'] / 1e6:.1f}M MACs, "
                f"{r['params']['full']:,} params), compressed {r['images_per_sec']['compressed']:.0f} img/s "
                f"({r['macs']['compressed'] / 1e6:.1f}M MACs, {r['params']['compressed']:,} params)"
            )
            lines.append(
                f"{name} {device}: speed-up {r['speedup']:.2f}x, FLOPs ratio {r['flops_ratio']:.2f}x, "
                f"speed-up / FLOPs ratio {r['speedup'] / r['flops_ratio']:.2f} (target >= 0.70): "
                f"{'met' if r['met'] else 'NOT met'}"
            )
        r = train_step("resnet20", device, args.train_batch, args.rounds, args.warmup)
        print(
            f"[train step resnet20 {device} batch {args.train_batch}] "
            f"no XLA {1e3 * r['seconds']['no_xla']:.1f} ms, XLA {1e3 * r['seconds']['xla']:.1f} ms"
        )
        lines.append(
            f"train step resnet20 {device}: XLA speed-up {r['xla_speedup']:.2f}x (target >= 1.00): "
            f"{'met' if r['met'] else 'NOT met'}"
        )
    print("\nratios:")
    for line in lines:
        print("  " + line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
