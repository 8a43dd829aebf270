"""Speed that is real: in one run, side by side (`python -m ista_tf.bench`, `make ista-bench`).

1. Inference throughput of a compressed model against the uncompressed one (batch 128, fp32, eval
   mode; on the CPU, and on the GPU when TensorFlow sees one). The compressed model is physically
   smaller (smaller kernels, not masks), so its speed-up should follow its FLOPs reduction:
   target speed-up >= 0.7 x (full MACs / compressed MACs).
2. One ISTA training step with XLA against the same step without XLA (resnet20, batch 125), with XLA
   on one part only (the batch norms, or the update) as further contenders, and the step's ingredients
   timed the same way (one convolution with its gradients, one batch norm + ReLU with its gradients,
   the update: SGD, prox, moving average), which shows where XLA wins or loses. Target: where
   `--xla auto` uses XLA, XLA is not slower than no XLA. The bench prints what auto picks on each
   device and the measured XLA speed-up, whichever way it goes.

Timings are medians over rounds that alternate the contenders (ABAB...), after warm-up calls that
include compilation; the process CPU time per call is printed next to the wall time of the train step,
as it varies less when other jobs share the machine. The default compressed widths keep half of every
prunable layer; pass --widths to time another pattern (e.g. the widths a real run printed).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import tensorflow as tf

from ista_tf import flops
from ista_tf.models import MODELS, build_model, full_arch
from ista_tf.models.layers import BatchNorm
from ista_tf.train import IstaTrainer, StageConfig, xla_by_default
from shared import tf_train
from shared.errors import UserError, main_guard


def _median_seconds(fns: dict, rounds: int, warmup: int, cpu: dict | None = None) -> dict[str, float]:
    """Median wall time of each zero-argument callable, the callables alternating within each round.
    With `cpu` (a dict), also the median process CPU time of each, stored in it."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in fns}
    cpu_times = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            c0, t0 = time.process_time(), time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
            cpu_times[name].append(time.process_time() - c0)
    if cpu is not None:
        cpu.update({name: statistics.median(t) for name, t in cpu_times.items()})
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


def _device_kind(device: str) -> str:
    return "gpu" if "GPU" in device.upper() else "cpu"


class _XlaBatchNorm(BatchNorm):
    """A batch norm computed by its own XLA function while the convolutions around it stay on
    TensorFlow's kernels ("XLA only where it might help"; a bench contender, not a training mode)."""

    def __call__(self, x: tf.Tensor, training: bool) -> tf.Tensor:
        compiled = self.__dict__.setdefault("_compiled", {})
        if training not in compiled:
            compiled[training] = tf_train.compile_fn(lambda x_: BatchNorm.__call__(self, x_, training), True)
        return compiled[training](x)


STEP_VARIANTS = {  # name: (jit_compile of the whole step, part compiled on its own)
    "no_xla": (False, None),
    "xla": (True, None),
    "xla_bn_only": (False, "batch norms"),
    "xla_update_only": (False, "update"),
}


def train_step(model_name: str, device: str, batch: int, rounds: int, warmup: int) -> dict:
    """The ISTA step without and with XLA, and with XLA on one part only (each batch norm, or the update:
    SGD, prox, moving average) while the rest runs on TensorFlow's kernels. `auto_xla` is what
    `--xla auto` picks on this kind of device, `met` whether that pick is not slower than the other
    mode `--xla` offers (whole step with or without XLA)."""
    with tf.device(device):
        images = tf.random.stateless_normal([batch, 32, 32, 3], seed=(1, 0))
        labels = tf.random.stateless_uniform([batch], seed=(1, 1), maxval=10, dtype=tf.int32)
        fns = {}
        for name, (jit, part) in STEP_VARIANTS.items():
            model = build_model(full_arch(model_name))
            if part == "batch norms":
                for layer in model.layers():
                    if isinstance(layer, BatchNorm):
                        layer.__class__ = _XlaBatchNorm
            trainer = IstaTrainer(
                model,
                tf.distribute.get_strategy(),
                StageConfig(model=model_name, l1_penalty=0.005, batch_size=batch),
                jit,
            )
            if part == "update":  # called by the step when it is traced (first call)
                trainer.step.apply_update = tf_train.compile_fn(trainer.step.apply_update, True)
            fns[name] = lambda t=trainer: t.step(images, labels)["loss"].numpy()
        cpu = {}
        seconds = _median_seconds(fns, rounds, warmup, cpu)
    auto_xla = xla_by_default(_device_kind(device))
    used, other = ("xla", "no_xla") if auto_xla else ("no_xla", "xla")
    return {
        "model": model_name,
        "device": device,
        "batch": batch,
        "seconds": seconds,
        "cpu_seconds": cpu,
        "xla_speedup": seconds["no_xla"] / seconds["xla"],
        "partial_speedups": {
            part: seconds["no_xla"] / seconds[name] for name, (_, part) in STEP_VARIANTS.items() if part
        },
        "auto_xla": auto_xla,
        "met": seconds[used] <= seconds[other],
    }


PART_NAMES = {
    "conv": "conv 3x3 16->16 on 32x32 + gradients",
    "bn_relu": "batch norm + ReLU + gradients",
    "update": "update (SGD, prox, moving average)",
}
PART_SHORT = {"conv": "convolution", "bn_relu": "batch norm", "update": "update"}


def step_parts(device: str, batch: int, rounds: int, warmup: int) -> dict:
    """The ingredients of the resnet20 step, each compiled without and with XLA: the most frequent
    convolution (6 of resnet20's 22) forward with both gradients, one training-mode batch norm + ReLU
    forward with its gradients (the model's own layer), and the update of all variables."""
    with tf.device(device):
        x = tf.random.stateless_normal([batch, 32, 32, 16], seed=(2, 0))
        kernel = tf.Variable(tf.random.stateless_normal([3, 3, 16, 16], seed=(2, 1)) * 0.1)
        bn = BatchNorm("bench/BatchNorm", 16, scale=True, center=True, role="prunable")

        def conv():
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = tf.nn.conv2d(x, kernel, 1, "SAME")
                loss = tf.reduce_sum(y * y)
            return tape.gradient(loss, [x, kernel])

        def bn_relu():
            with tf.GradientTape() as tape:
                tape.watch(x)
                loss = tf.reduce_sum(tf.nn.relu(bn(x, training=True)) * x)
            return tape.gradient(loss, [x, bn.gamma, bn.beta])

        fns = {}
        for jit in (False, True):
            tag = "xla" if jit else "no_xla"
            trainer = IstaTrainer(build_model(full_arch("resnet20")), tf.distribute.get_strategy(), StageConfig(), jit)
            grads = [tf.zeros_like(v) for v in trainer.variables]
            parts = {
                "conv": tf_train.compile_fn(conv, jit),
                "bn_relu": tf_train.compile_fn(bn_relu, jit),
                "update": tf_train.compile_fn(lambda g, t=trainer: t._apply_update(g), jit),
            }
            fns[f"conv {tag}"] = lambda f=parts["conv"]: f()[0].numpy()
            fns[f"bn_relu {tag}"] = lambda f=parts["bn_relu"]: f()[0].numpy()
            fns[f"update {tag}"] = lambda f=parts["update"], t=trainer, g=grads: (f(g), t.global_step.numpy())
        seconds = _median_seconds(fns, rounds, warmup)
    return {part: {"no_xla": seconds[f"{part} no_xla"], "xla": seconds[f"{part} xla"]} for part in PART_NAMES}


def default_widths(model_name: str) -> list[int]:
    return [max(1, w // 2) for w in MODELS[model_name].full_widths]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m ista_tf.bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--models", default="resnet20,cnn4", help="comma-separated models for the inference comparison")
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
        ms = {k: 1e3 * v for k, v in r["seconds"].items()}
        cpu_ms = {k: 1e3 * v for k, v in r["cpu_seconds"].items()}
        print(
            f"[train step resnet20 {device} batch {args.train_batch}] "
            f"no XLA {ms['no_xla']:.1f} ms (CPU time {cpu_ms['no_xla']:.1f} ms), "
            f"XLA {ms['xla']:.1f} ms (CPU time {cpu_ms['xla']:.1f} ms); "
            f"XLA on the batch norms only {ms['xla_bn_only']:.1f} ms, on the update only {ms['xla_update_only']:.1f} ms"
        )
        parts = step_parts(device, args.train_batch, args.rounds, args.warmup)
        print(
            f"[train step parts {device} batch {args.train_batch}] no XLA / XLA: "
            + "; ".join(
                f"{PART_NAMES[k]} {1e3 * v['no_xla']:.1f} / {1e3 * v['xla']:.1f} ms (XLA {v['no_xla'] / v['xla']:.2f}x)"
                for k, v in parts.items()
            )
        )
        slower = [f"{PART_SHORT[k]} {v['no_xla'] / v['xla']:.2f}x" for k, v in parts.items() if v["xla"] > v["no_xla"]]
        partial = ", ".join(f"on the {k} only {v:.2f}x" for k, v in r["partial_speedups"].items())
        lines.append(
            f"train step resnet20 {device}: XLA speed-up {r['xla_speedup']:.2f}x ({partial})"
            + (f"; parts slower with XLA: {', '.join(slower)}" if slower else "")
        )
        if r["auto_xla"]:
            verdict = "met" if r["met"] else "NOT met"
        else:
            verdict = "met (no XLA is the faster path here)" if r["met"] else "NOT met (XLA would be faster here)"
        lines.append(
            f"train step resnet20 {device}: --xla auto uses {'XLA' if r['auto_xla'] else 'no XLA'}; "
            f"target (XLA not slower where auto uses it): {verdict}"
        )
    print("\nratios:")
    for line in lines:
        print("  " + line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
