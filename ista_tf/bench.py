"""Speed that is real: in one run, side by side (`python -m ista_tf.bench`, `make ista-bench`).

1. Inference of the compressed model against the full one, each under every CPU runtime at hand
   (`shared.tf_export.runtimes`: tf.function, XLA, TFLite through LiteRT, ONNX through onnxruntime),
   at batch 128 and 1, fp32, a fixed thread count (--threads). The compressed model is physically
   smaller (smaller kernels, not masks), so its speed-up should follow its FLOPs reduction. Headline:
   best compressed runtime / best full runtime (the full model's baseline is the fastest way to run
   it); target speed-up >= 0.8 x (full MACs / compressed MACs).
2. One ISTA training step with XLA against the same step without XLA (resnet20, batch 125), with XLA
   on one part only (the batch norms, or the update) as further contenders, and the step's ingredients
   timed the same way (one convolution with its gradients, one batch norm + ReLU with its gradients,
   the update: SGD, prox, moving average), which shows where XLA wins or loses. Target: where
   `--xla auto` uses XLA, XLA is not slower than no XLA.

Timings (`shared.bench`): every contender of a table is timed in the same rounds, in an order that
rotates from round to round, each timed call after an untimed one, after warm-up calls that include
compilation; tables give medians with their spread (IQR / median, min-max) and the machine load. A
verdict ("met" / "not met") is given only when the spread of the paired ratio is narrow, "noisy (no
verdict)" otherwise, and a speed-up above the FLOPs ratio is flagged as implausible. On a machine that
other jobs share, the numbers are noisy: read the load line. The default compressed widths keep half
of every prunable layer; pass --widths to time another pattern (e.g. the widths a real run printed).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import tensorflow as tf

from ista_tf import flops
from ista_tf.models import MODELS, build_model, full_arch
from ista_tf.models.layers import BatchNorm
from ista_tf.train import IstaTrainer, StageConfig, xla_by_default
from shared import bench, tf_export, tf_train
from shared.errors import UserError, main_guard

TARGET = 0.8  # speed-up >= TARGET x FLOPs ratio (issue target for the compressed models)
FULL, COMPRESSED = "full", "compressed"


def _median_seconds(fns: dict, rounds: int, warmup: int) -> dict[str, float]:
    """Median wall time of each zero-argument callable, timed in rotating rounds (shared.bench)."""
    times = bench.time_paired(fns, reps=rounds, warmup=warmup)
    return {name: bench.summarize(t).median for name, t in times.items()}


def inference_runtimes(model_name: str, widths: list[int], runtimes, threads: int, workdir: Path) -> tuple:
    """({'full <runtime>' | 'compressed <runtime>': callable(images) -> logits}, {kind: model})."""
    models = {
        FULL: build_model(full_arch(model_name)),
        COMPRESSED: build_model({"model": model_name, "widths": widths}),
    }
    fns = tf_export.runtimes_for_models(
        models,
        np.zeros([1, 32, 32, 3], np.float32),
        names=runtimes,
        threads=threads,
        workdir=workdir / model_name,
        log=lambda line: print(f"  {model_name} {line}"),
    )
    return fns, models


def inference(fns: dict, models: dict, batch: int, rounds: int, warmup: int) -> dict:
    """Time every runtime of both models on one batch; the headline ratio and its verdict."""
    images = tf.random.stateless_normal([batch, 32, 32, 3], seed=(0, 0)).numpy()
    times = bench.time_paired({k: (lambda f=f: f(images)) for k, f in fns.items()}, reps=rounds, warmup=warmup)
    counts = {kind: flops.count(m) for kind, m in models.items()}
    flops_ratio = counts[FULL].macs / counts[COMPRESSED].macs
    head = bench.headline(
        times, [k for k in times if k.startswith(FULL)], [k for k in times if k.startswith(COMPRESSED)]
    )
    return {
        "times": times,
        "macs": {k: c.macs for k, c in counts.items()},
        "params": {k: c.params for k, c in counts.items()},
        "flops_ratio": flops_ratio,
        "headline": head,
        "verdict": bench.verdict(head.speedup, TARGET * flops_ratio, head.paired, flops_ratio=flops_ratio),
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
        times = bench.time_paired(fns, reps=rounds, warmup=warmup)
    seconds = {name: bench.summarize(t).median for name, t in times.items()}
    auto_xla = xla_by_default(_device_kind(device))
    used, other = ("xla", "no_xla") if auto_xla else ("no_xla", "xla")
    return {
        "model": model_name,
        "device": device,
        "batch": batch,
        "times": times,
        "seconds": seconds,
        "xla_paired": bench.paired_ratio(times["no_xla"], times["xla"]),
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


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


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
    p.add_argument("--batch", default="128,1", help="inference batch sizes, comma-separated")
    p.add_argument(
        "--runtimes",
        default=",".join(tf_export.DEFAULT_RUNTIMES),
        help=f"inference runtimes, comma-separated subset of {tf_export.TF_RUNTIMES}",
    )
    p.add_argument("--threads", type=int, default=1, help="threads of every runtime (TensorFlow intra-op too)")
    p.add_argument("--train_batch", type=int, default=125, help="training batch (the original's)")
    p.add_argument("--rounds", type=int, default=9, help="timed rounds per contender")
    p.add_argument("--warmup", type=int, default=2, help="untimed calls per contender (compilation included)")
    p.add_argument("--skip_train", action="store_true", help="time inference only (no training-step comparison)")
    return p


@main_guard
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    names = _csv(args.models)
    unknown = [m for m in names if m not in MODELS]
    if unknown or not names:
        raise UserError(f"unknown model(s) {unknown}; expected a comma-separated subset of {sorted(MODELS)}")
    runtimes = _csv(args.runtimes)
    if not runtimes or any(r not in tf_export.TF_RUNTIMES for r in runtimes):
        raise UserError(
            f"--runtimes must be a comma-separated subset of {tf_export.TF_RUNTIMES}, got {args.runtimes!r}"
        )
    try:
        batches = [int(b) for b in _csv(args.batch)]
    except ValueError as err:
        raise UserError(f"--batch must be comma-separated integers, got {args.batch!r}") from err
    if not batches or min(batches) < 1 or args.threads < 1 or args.rounds < 1 or args.warmup < 0:
        raise UserError("--batch sizes, --threads and --rounds must be >= 1 and --warmup >= 0")
    threads_fixed = tf_export.set_threads(args.threads)
    tf.get_logger().setLevel("ERROR")  # each batch size traces the functions once more: expected, not news
    devices = ["/CPU:0"] + (["/GPU:0"] if tf.config.list_physical_devices("GPU") else [])
    print(
        f"ista_tf bench: TensorFlow {tf.__version__}, fp32, {args.threads} thread(s)"
        f"{'' if threads_fixed else ' (TensorFlow already started: its own thread count unchanged)'}, "
        f"medians of {args.rounds} rotating rounds after {args.warmup} warm-up calls; {bench.describe_load()}"
    )
    lines = []
    workdir = Path(tempfile.mkdtemp(prefix="ista-bench-"))
    for i, name in enumerate(names):
        widths = default_widths(name)
        if args.widths and i == 0:
            widths = [int(w) for w in _csv(args.widths)]
        fns, models = inference_runtimes(name, widths, runtimes, args.threads, workdir)
        for batch in batches:
            r = inference(fns, models, batch, args.rounds, args.warmup)
            title = (
                f"\n[inference {name} batch {batch}] widths {widths}: full {r['macs'][FULL] / 1e6:.1f}M MACs "
                f"({r['params'][FULL]:,} params), compressed {r['macs'][COMPRESSED] / 1e6:.1f}M MACs "
                f"({r['params'][COMPRESSED]:,} params), FLOPs ratio {r['flops_ratio']:.2f}x"
            )
            print(bench.format_table(r["times"], batch, reference=f"{FULL} tf.function", title=title))
            h = r["headline"]
            lines.append(
                f"{name} batch {batch}: best compressed ({h.best_pruned}) / best full ({h.best_dense}) "
                f"{h.speedup:.2f}x, FLOPs ratio {r['flops_ratio']:.2f}x, speed-up / FLOPs ratio "
                f"{h.speedup / r['flops_ratio']:.2f}; target {TARGET} x FLOPs ratio: {r['verdict']}"
            )
    if args.skip_train:
        devices = []
    for device in devices:
        r = train_step("resnet20", device, args.train_batch, args.rounds, args.warmup)
        print(
            bench.format_table(
                r["times"],
                args.train_batch,
                reference="no_xla",
                title=f"\n[train step resnet20 {device} batch {args.train_batch}] (images/s = examples/s)",
            )
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
        paired = r["xla_paired"]
        lines.append(
            f"train step resnet20 {device}: XLA speed-up {r['xla_speedup']:.2f}x (spread {100 * paired.spread:.1f}%; "
            f"{partial})" + (f"; parts slower with XLA: {', '.join(slower)}" if slower else "")
        )
        # the mode auto picks must not be slower than the other: judged on the paired ratio, with its noise
        picked = paired if r["auto_xla"] else bench.paired_ratio(r["times"]["xla"], r["times"]["no_xla"])
        v = bench.verdict(picked.median, 1.0, picked)
        lines.append(
            f"train step resnet20 {device}: --xla auto uses {'XLA' if r['auto_xla'] else 'no XLA'}; "
            f"target (the mode auto picks is not slower than the other): {v}"
        )
    print("\nratios (" + bench.describe_load() + "):")
    for line in lines:
        print("  " + line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
