"""Fine-tuning (research/ekg.md 1.9-1.10; the original's `train.py` + `op_utils.py`), and evaluation.

The step: Nesterov SGD (momentum 0.9), weight decay 5e-4 on every trainable variable as a gradient
term (wd * v), lr 0.01 x 0.2 at 30 / 60 / 80 % of the epochs, batch 128. Two objectives:

- `none` (the README command's default, the poster's "Ensemble / None" row): CE on one augmented view.
- `ensemble` (`--Knowledge`, full EKG, Eq. 12): two independently jittered views in one forward pass of
  2B; M-bar = mean logits of the teachers whose KL_T to teacher 0 is below the student's (dynamic
  subset; teacher 0 always kept); per view CE + KL_T(M-bar || student), summed over the views, / B,
  and the gradients halved. KL_T(p||q) = T * sum softmax(p/T) (log softmax(p/T) - log softmax(q/T)),
  T (not T^2) = 4 for CIFAR, 10 for 1000 classes.

Machinery from `shared.tf_train`: tf.distribute (Mirrored / MultiWorkerMirrored; BN statistics and the
teacher-subset sums of the global batch, so R replicas compute what one device does), XLA in one place
(`compile_fn`), gradient accumulation over k micro-batches (`--accum`), checkpoints with resume. The
data stream is a function of (seed, step), so a resumed run continues with the same batches.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from ekg_tf2 import cli, data, params
from ekg_tf2.memory_bank import open_bank
from ekg_tf2.models import ResNet
from shared import tf_train
from shared.errors import UserError, check_range, main_guard
from shared.paths import atomic_write_text

XLA_CHOICES = ("auto", "on", "off")
KNOWLEDGE = ("none", "ensemble")


@dataclass(frozen=True)
class FinetuneConfig:
    epochs: int = 100
    batch_size: int = 128
    learning_rate: float = 0.01
    decay_points: tuple = (0.3, 0.6, 0.8)
    decay_rate: float = 0.2
    weight_decay: float = 5e-4
    momentum: float = 0.9
    knowledge: str = "none"
    temperature: float | None = None  # None: 4 below 1000 classes, else 10
    accum: int = 1
    xla: str = "auto"
    distribute: str = "auto"
    seed: int = 0
    val_batch_size: int = 256
    max_steps: int | None = None  # stop early (smoke runs)
    steps_per_epoch: int | None = None  # override N // batch (smoke runs)

    def validate(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.accum < 1:
            raise UserError("--train_epoch, --batch_size and --accum must be >= 1")
        if self.batch_size % self.accum:
            raise UserError(f"--batch_size {self.batch_size} is not divisible by --accum {self.accum}")
        check_range("--learning_rate", self.learning_rate, 0.0, math.inf, low_open=True)
        check_range("--weight_decay", self.weight_decay, 0.0, math.inf)
        if self.knowledge not in KNOWLEDGE:
            raise UserError(f"knowledge must be one of {KNOWLEDGE}, got {self.knowledge!r}")
        if self.xla not in XLA_CHOICES:
            raise UserError(f"--xla must be one of {XLA_CHOICES}, got {self.xla!r}")
        if self.distribute not in tf_train.STRATEGIES:
            raise UserError(f"--distribute must be one of {tf_train.STRATEGIES}, got {self.distribute!r}")

    def settings(self) -> dict:
        return dataclasses.asdict(self)


def use_xla(flag: str) -> bool:
    """--xla on/off, or auto: on a GPU (the original compiled every step); off on a CPU, where XLA's
    convolutions are slower than oneDNN's (`python -m ekg_tf2.bench` times both)."""
    return flag == "on" or (flag == "auto" and tf_train.device_kind() == "gpu")


def temperature_for(num_classes: int, t: float | None) -> float:
    return float(t) if t is not None else (10.0 if num_classes >= 1000 else 4.0)


def learning_rate(cfg: FinetuneConfig, epoch: int) -> float:
    """Step schedule: lr x decay_rate at each decay point (fractions of the epochs) passed."""
    passed = sum(epoch >= int(p * cfg.epochs) for p in cfg.decay_points)
    return cfg.learning_rate * cfg.decay_rate**passed


# ----------------------------------------------------------------------------------------------------
# Losses (Eq. 12)
# ----------------------------------------------------------------------------------------------------


def kl_t(p_logits: tf.Tensor, q_logits: tf.Tensor, t: float) -> tf.Tensor:
    """T * KL(softmax(p/T) || softmax(q/T)) per example (the code's factor T, not T^2)."""
    p = tf.nn.log_softmax(p_logits / t)
    return t * tf.reduce_sum(tf.exp(p) * (p - tf.nn.log_softmax(q_logits / t)), -1)


def _global_sum(x: tf.Tensor) -> tf.Tensor:
    ctx = tf.distribute.get_replica_context()
    if ctx is not None and ctx.num_replicas_in_sync > 1:
        return ctx.all_reduce(tf.distribute.ReduceOp.SUM, x)
    return x


def teacher_subset(views: tf.Tensor, bank: tf.Tensor, t: float) -> tuple[tf.Tensor, tf.Tensor]:
    """(M-bar [b, classes], kept mask [K]). views: student logits [V, b, classes]; bank [b, classes, K].
    Teacher j is kept when sum_batch KL_T(teacher 0 || teacher j) < sum_batch KL_T(teacher 0 || mean
    student); teacher 0 always. The sums run over the global batch."""
    top = bank[:, :, 0]
    d_student = _global_sum(tf.reduce_sum(kl_t(top, tf.reduce_mean(views, 0), t)))
    d_teachers = _global_sum(tf.reduce_sum(_kl_each(top, bank, t), 0))
    keep = tf.logical_or(d_teachers < d_student, tf.range(tf.shape(bank)[2]) == 0)
    w = tf.cast(keep, bank.dtype)
    return tf.reduce_sum(bank * w, -1) / tf.reduce_sum(w), keep


def _kl_each(top: tf.Tensor, bank: tf.Tensor, t: float) -> tf.Tensor:
    """[b, K]: KL_T(top || bank[..., j]) for every teacher j."""
    p = tf.nn.log_softmax(top / t)[:, :, None]
    q = tf.nn.log_softmax(bank / t, axis=1)
    return t * tf.reduce_sum(tf.exp(p) * (p - q), 1)


def ekg_per_example(views: tf.Tensor, labels: tf.Tensor, bank: tf.Tensor, t: float) -> tf.Tensor:
    """Eq. (12) per example: 0.5 * sum over views of [CE(label, view) + KL_T(M-bar || view)]."""
    target, _ = teacher_subset(views, bank, t)
    target = tf.stop_gradient(target)
    per_view = [
        tf.nn.sparse_softmax_cross_entropy_with_logits(labels, v) + kl_t(target, v, t) for v in tf.unstack(views)
    ]
    return 0.5 * tf.add_n(per_view)  # the gradients halved


# ----------------------------------------------------------------------------------------------------
# Optimizer and step
# ----------------------------------------------------------------------------------------------------


class NesterovSGD(tf.Module):
    """SGD with Nesterov momentum as Keras 2's SGD(nesterov=True): v <- m v - lr g; w <- w + m v - lr g,
    one fused kernel per variable (the one Keras 2 ran; a tenth of the ops to trace). Called in
    cross-replica context: `extended.update` applies it to every copy of a mirrored variable."""

    def __init__(self, variables, learning_rate: float, momentum: float = 0.9):
        super().__init__(name="sgd")
        self.lr = tf.Variable(float(learning_rate), trainable=False, name="learning_rate")
        self.momentum = float(momentum)
        self.velocities = [tf.Variable(tf.zeros(v.shape), trainable=False, name="velocity") for v in variables]

    def _apply_one(self, v, g, vel):
        return tf.raw_ops.ResourceApplyKerasMomentum(
            var=v.handle,
            accum=vel.handle,
            lr=tf.cast(self.lr, g.dtype),
            grad=g,
            momentum=self.momentum,
            use_nesterov=True,
        )

    def apply(self, grads, variables) -> None:
        extended = tf.distribute.get_strategy().extended
        for g, v, vel in zip(grads, variables, self.velocities):
            extended.update(v, self._apply_one, args=(g, vel), group=False)


class FineTuner:
    """The compiled fine-tuning step of `model` and its state (optimizer slots, step counter)."""

    def __init__(self, model: ResNet, strategy: tf.distribute.Strategy, cfg: FinetuneConfig, jit_compile: bool):
        cfg.validate()
        self.model, self.strategy, self.cfg = model, strategy, cfg
        self.variables = model.weight_variables()
        self.t = temperature_for(model.num_classes, cfg.temperature)
        with strategy.scope():
            self.opt = NesterovSGD(self.variables, cfg.learning_rate, cfg.momentum)
            self.global_step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
        self.step = tf_train.TrainStep(
            strategy,
            self.variables,
            self._compute_loss,
            self._apply_update,
            global_batch_size=cfg.batch_size // cfg.accum,
            accum_steps=cfg.accum,
            jit_compile=jit_compile,
            autograph=False,  # no tensor-dependent Python control flow: traced as plain Python
        )

    def _compute_loss(self, features, labels):
        k = self.model.num_classes
        if self.cfg.knowledge == "ensemble":
            b = tf.shape(features)[0]
            x = tf.concat([features[:, 0], features[:, 1]], 0)  # both views in one pass of 2B
            views = tf.reshape(self.model(x, training=True), [2, b, k])
            y = tf.cast(labels[:, 0], tf.int32)
            bank = tf.reshape(labels[:, 1:], [b, k, -1])
            per_example = ekg_per_example(views, y, bank, self.t)
            logits = views[0]
        else:
            logits = self.model(features, training=True)
            y = labels
            per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits)
        # wd * v added to every gradient = the gradient of wd/2 * sum ||v||^2
        decay = 0.5 * self.cfg.weight_decay * tf.add_n([tf.reduce_sum(tf.square(v)) for v in self.variables])
        correct = tf.reduce_sum(tf.cast(tf.argmax(logits, 1, output_type=tf.int32) == y, tf.float32))
        return per_example, decay, {"correct": correct}

    def _apply_update(self, grads):
        self.opt.apply(grads, self.variables)
        self.global_step.assign_add(1)

    def features(self, images: np.ndarray, labels: np.ndarray, bank_rows, seed: tuple[int, int], dataset: str):
        """The global batch's (features, labels) as the step takes them (two views + packed bank rows
        with the memory bank; one view and int labels without)."""
        if dataset == "ILSVRC":  # augmented by the input pipeline (ekg_tf2.imagenet): [B, 2, H, W, 3] or [B, H, W, 3]
            if self.cfg.knowledge != "ensemble":
                return images, tf.constant(labels)
            packed = np.concatenate(
                [labels[:, None].astype(np.float32), np.asarray(bank_rows).reshape(len(labels), -1)], 1
            )
            return images, tf.constant(packed)
        if self.cfg.knowledge == "ensemble":
            v1 = data.augment(images, (seed[0], 2 * seed[1]), dataset, jitter=True)
            v2 = data.augment(images, (seed[0], 2 * seed[1] + 1), dataset, jitter=True)
            packed = np.concatenate(
                [labels[:, None].astype(np.float32), np.asarray(bank_rows).reshape(len(labels), -1)], 1
            )
            return tf.stack([v1, v2], 1), tf.constant(packed)
        return data.augment(images, seed, dataset, jitter=False), tf.constant(labels)

    def update(self, features, labels) -> dict:
        """One update on a global batch, as `accum` micro-batches."""
        k, b = self.cfg.accum, int(features.shape[0])
        m = b // k
        out = {}
        for i in range(k):
            r = self.step(features[i * m : (i + 1) * m], labels[i * m : (i + 1) * m])
            out = {n: out.get(n, 0.0) + float(v) / (k if n == "loss" else 1) for n, v in r.items()}
        return out


# ----------------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------------

BN_MODES = ("moving-average", "batch-stats")


def evaluate(model: ResNet, images: np.ndarray, labels: np.ndarray, dataset: str, mode: str, batch: int = 256) -> dict:
    """Top-1/top-5 (%) on (images, labels). moving-average: BN with its moving statistics (the original
    train.py); batch-stats: BN with the statistics of each batch, nothing updated (the original test.py)."""
    if mode not in BN_MODES:
        raise UserError(f"BN evaluation mode must be one of {BN_MODES}, got {mode!r}")
    return evaluate_batches(model, data.eval_batches(images, labels, batch, dataset), mode)


def evaluate_batches(model: ResNet, batches, mode: str) -> dict:
    """Top-1/top-5 (%) over (normalised images, int32 labels) batches."""
    if mode not in BN_MODES:
        raise UserError(f"BN evaluation mode must be one of {BN_MODES}, got {mode!r}")
    fn = _eval_fn(model, mode == "batch-stats")
    top1 = top5 = n = 0
    for x, y in batches:
        t1, t5 = fn(x, tf.cast(y, tf.int32))
        top1, top5, n = top1 + int(t1), top5 + int(t5), n + int(y.shape[0])
    return {"top1": 100.0 * top1 / n, "top5": 100.0 * top5 / n, "n": n, "bn": mode}


def evaluate_split(model: ResNet, split, dataset: str, mode: str, batch: int = 256) -> dict:
    """`evaluate` on a CIFAR ArraySplit, or over an ILSVRC split's batches (ekg_tf2.imagenet)."""
    if dataset == "ILSVRC":
        return evaluate_batches(model, split.batches(batch), mode)
    return evaluate(model, split.images, split.labels, dataset, mode, batch)


_EVAL_FNS: dict = {}


def _eval_fn(model, training: bool):
    key = (id(model), training)
    if key not in _EVAL_FNS:

        def fn(x, y):
            logits = model(x, training=training, update=False)
            k = min(5, model.num_classes)
            top1 = tf.reduce_sum(tf.cast(tf.argmax(logits, 1, output_type=tf.int32) == y, tf.int32))
            top5 = tf.reduce_sum(tf.cast(tf.math.in_top_k(y, logits, k), tf.int32))
            return top1, top5

        _EVAL_FNS[key] = tf.function(fn, reduce_retracing=True, autograph=False)
    return _EVAL_FNS[key]


# ----------------------------------------------------------------------------------------------------
# The fine-tuning stage
# ----------------------------------------------------------------------------------------------------


def run_finetune(
    cfg: FinetuneConfig,
    arch: str,
    dataset: str,
    trained_param: str | Path,
    train_path: str | Path,
    train_split,
    test_split,
    *,
    bank_file: str | Path | None = None,
    on_step: Callable[[int], None] | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Fine-tune the network in `trained_param` (slimmed_params.pkl) and write
    `<train_path>/trained_params.pkl` every epoch; resumable from `<train_path>/finetune_ckpt`.
    A finished stage (`finetune.json`) is not rerun: its result is returned with status 'finished-before'."""
    cfg.validate()
    train_path = Path(train_path)
    done = train_path / "finetune.json"
    if done.is_file():
        result = json.loads(done.read_text())
        log(f"fine-tuning in {train_path} finished before (test top-1 {result['top1']:.2f} %); not rerun")
        return {**result, "status": "finished-before"}
    strategy = tf_train.make_strategy(cfg.distribute)
    jit = use_xla(cfg.xla) and tf_train.xla_possible(strategy)
    tf_train.set_seed(cfg.seed)
    p = params.read_params(trained_param)
    with strategy.scope():
        model = params.model_from_params(arch, dataset, p, str(trained_param))
    tuner = FineTuner(model, strategy, cfg, jit)
    bank = None
    if cfg.knowledge == "ensemble":
        bank = open_bank(bank_file, len(train_split), model.num_classes)
    if dataset == "ILSVRC":
        stream = train_split.stream(cfg.batch_size, cfg.seed, views=2 if cfg.knowledge == "ensemble" else 1)
    else:
        stream = data.TrainStream(train_split, cfg.batch_size, cfg.seed)
    spe = cfg.steps_per_epoch or stream.steps_per_epoch
    total = cfg.epochs * spe if cfg.max_steps is None else min(cfg.max_steps, cfg.epochs * spe)
    chief = tf_train.is_chief(strategy)
    keeper = tf_train.CheckpointKeeper(
        train_path / "finetune_ckpt",
        strategy,
        max_to_keep=2,
        weights=[v for _, v in model.param_items()],
        velocities=tuner.opt.velocities,
        lr=tuner.opt.lr,
        step=tuner.global_step,
    )
    resumed = keeper.restore_latest()
    step = int(tuner.global_step.numpy())
    # the original's summaries (loss, lr, test accuracy) as TensorBoard scalars beside metrics.jsonl
    metrics = tf_train.MetricsWriter(train_path, enabled=chief, events_dir=train_path / "tensorboard")
    from ekg_tf2.flops import count

    counts = count(model)
    log(
        f"fine-tuning {arch} ({counts.params / 1e6:.3f} M params, {counts.macs / 1e6:.2f} M FLOPs by the code's "
        f"counter), knowledge {cfg.knowledge}, {tf_train.describe(strategy)}, xla {'on' if jit else 'off'}, "
        f"batch {cfg.batch_size}{f' = {cfg.accum} x {cfg.batch_size // cfg.accum}' if cfg.accum > 1 else ''}, "
        f"{total} steps" + (f"; resuming at step {step} ({resumed})" if resumed else "")
    )
    t0, last = time.time(), {}
    ev = None
    while step < total:
        epoch = step // spe
        tuner.opt.lr.assign(learning_rate(cfg, epoch))
        idx, images, labels = stream.batch(step)
        rows = np.asarray(bank[idx]) if bank is not None else None
        features, packed = tuner.features(images, labels, rows, (cfg.seed, step), dataset)
        last = tuner.update(features, packed)
        step += 1
        if not math.isfinite(last["loss"]):
            raise UserError(f"fine-tuning diverged (loss {last['loss']}) at step {step}; try a smaller --learning_rate")
        if on_step is not None:
            on_step(step)
        if step % spe == 0 or step == total:
            ev = evaluate_split(model, test_split, dataset, "moving-average", cfg.val_batch_size)
            lr = float(tuner.opt.lr.numpy())
            log(
                f"epoch {(step - 1) // spe + 1}: step {step}/{total}, train loss {last['loss']:.4f}, "
                f"lr {lr:g}, test top-1 {ev['top1']:.2f} % ({time.time() - t0:.0f} s)"
            )
            metrics.scalars(step, {"train_loss": last["loss"], "learning_rate": lr, "test_acc": ev["top1"]})
            if chief:
                params.write_params(train_path / "trained_params.pkl", params.model_params(model))
            keeper.save(step)
    keeper.close()
    metrics.close()
    if ev is None:
        ev = evaluate_split(model, test_split, dataset, "moving-average", cfg.val_batch_size)
    result = {
        "top1": ev["top1"],
        "top5": ev["top5"],
        "bn_eval": "moving-average",
        "steps": step,
        "params": counts.params,
        "flops": counts.macs,
        "knowledge": cfg.knowledge,
        "seconds": time.time() - t0,
        "settings": cfg.settings(),
    }
    if chief:
        if not (train_path / "trained_params.pkl").is_file():
            params.write_params(train_path / "trained_params.pkl", params.model_params(model))
        atomic_write_text(done, json.dumps(result, indent=1, default=str) + "\n")
    return {**result, "status": "trained", "model": model}


# ----------------------------------------------------------------------------------------------------
# python -m ekg_tf2.train (the original train.py's flags)
# ----------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ekg_tf2.train", description=__doc__, formatter_class=cli.HelpFormatter)
    cli.add_common_flags(p)
    cli.add_finetune_flags(p)
    p.add_argument("--trained_param", required=True, help="params pkl to fine-tune (slimmed_params.pkl)")
    return p


def config_from_args(args) -> FinetuneConfig:
    return FinetuneConfig(
        epochs=args.train_epoch,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        decay_points=tuple(args.decay_points),
        decay_rate=args.decay_rate,
        weight_decay=args.weight_decay,
        knowledge="ensemble" if args.Knowledge else "none",
        temperature=args.temperature,
        accum=args.accum,
        xla=args.xla,
        distribute=args.distribute,
        seed=args.seed,
        val_batch_size=args.val_batch_size,
        max_steps=args.max_steps,
        steps_per_epoch=args.steps_per_epoch,
    )


def run(args, log: Callable[[str], None] = print, search: dict | None = None) -> dict:
    """Fine-tune `--trained_param`; `search` is the search stage's result (else read from the
    `search.json` beside the params file, when there is one) for the run record."""
    from ekg_tf2 import records
    from ekg_tf2.memory_bank import bank_path

    cli.check_common(args)
    cfg = config_from_args(args)
    if args.dataset == "ILSVRC":
        from ekg_tf2 import imagenet

        limits = (args.train_limit, args.test_limit)
        train_split, test_split = imagenet.load_splits(args.data_dir, args.image_size, *limits)
    else:
        train_split = data.limited(data.load_split(args.dataset, "train", args.data_dir), args.train_limit)
        test_split = data.limited(data.load_split(args.dataset, "test", args.data_dir), args.test_limit)
    bank_file = args.memory_bank or bank_path(Path(args.trained_param).parent, args.dataset)
    result = run_finetune(
        cfg,
        args.arch,
        args.dataset,
        args.trained_param,
        args.train_path,
        train_split,
        test_split,
        bank_file=bank_file,
        log=log,
    )
    if search is None and (Path(args.trained_param).parent / "search.json").is_file():
        search = json.loads((Path(args.trained_param).parent / "search.json").read_text())
    if result["status"] == "trained" and args.records:
        records.write_finetune_record(args, result, search, train_split, test_split, log)
    return result


@main_guard
def main(argv=None) -> int:
    run(build_parser().parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
