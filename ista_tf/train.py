"""The training loop of one stage of the ISTA chain, and evaluation (TF2: tf.Module models, a compiled
step from shared.tf_train, tf.distribute, XLA, gradient accumulation, checkpoints with resume).

One stage (research/ista.md 2.7, 6.3-6.4): start from the previous stage's compact, averaged model
(or a fresh full model for version 0), train `max_steps` steps of SGD + the ISTA proximal step, keep an
exponential moving average of the weights, then remove every channel whose raw gamma is exactly zero
and write the compact model, rebuilt from the averaged weights, as the next version.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from ista_tf import chain, data, flops, ista, prune
from ista_tf.models import build_model, check_model_name, full_arch
from ista_tf.models.layers import BN_DECAY, BatchNorm
from shared import tf_train
from shared.data import ArraySplit
from shared.errors import UserError, WriteFailed, check_count, check_range
from shared.paths import RunFolderLock, check_writable
from shared.results import make_record, write_record

MOVING_AVERAGE_DECAY = 0.999  # cifar10.py MOVING_AVERAGE_DECAY
XLA_CHOICES = ("auto", "on", "off")


@dataclass(frozen=True)
class StageConfig:
    """The settings of one stage; defaults are the original programs' flag defaults."""

    model: str = "resnet20"
    l1_penalty: float = 0.005
    max_steps: int = 100_000
    learning_rate: float = 0.1
    batch_size: int = 125
    weight_decay: float = 0.0005
    alpha: float = 1.0  # paper's gamma-W rescaling; 1 = off (the released code has none)
    fold: str = "released-code"
    squeeze_model: bool = True
    bn_decay: float = BN_DECAY  # slim's default; short smoke runs need less for usable moving statistics
    seed: int = 0
    accum_steps: int = 1
    xla: str = "auto"
    distribute: str = "auto"
    precision: str = "float32"
    log_frequency: int = 100
    save_checkpoint_steps: int = 0  # 0: save by time only
    save_checkpoint_secs: float = 600.0  # MonitoredTrainingSession's default

    def settings(self) -> dict:
        return dataclasses.asdict(self)

    def validate(self) -> None:
        check_model_name(self.model)
        check_range("--l1_penalty", self.l1_penalty, 0.0, math.inf)
        check_range("--learning_rate", self.learning_rate, 0.0, math.inf, low_open=True)
        check_range("--weight_decay", self.weight_decay, 0.0, math.inf)
        check_range("--alpha", self.alpha, 0.0, math.inf, low_open=True)
        check_range("--bn_decay", self.bn_decay, 0.0, 1.0, high_open=True)
        check_count("--max_steps", self.max_steps, 1)  # 0 would mark an untrained stage finished
        check_count("--batch_size", self.batch_size, 1)
        check_count("--accum_steps", self.accum_steps, 1)
        check_count("--log_frequency", self.log_frequency, 1)
        check_count("--seed", self.seed, 0)
        check_count("--save_checkpoint_steps", self.save_checkpoint_steps, 0)
        check_range("--save_checkpoint_secs", self.save_checkpoint_secs, 0.0, math.inf)
        if self.batch_size % self.accum_steps:
            raise UserError(
                f"--batch_size {self.batch_size} is not divisible by --accum_steps {self.accum_steps} "
                "(each update sums accum_steps micro-batches of batch_size / accum_steps)"
            )
        if self.fold not in prune.FOLDS:
            raise UserError(f"--fold must be one of {prune.FOLDS}, got {self.fold!r}")
        if self.xla not in XLA_CHOICES:
            raise UserError(f"--xla must be one of {XLA_CHOICES}, got {self.xla!r}")
        if self.distribute not in tf_train.STRATEGIES:
            raise UserError(f"--distribute must be one of {tf_train.STRATEGIES}, got {self.distribute!r}")
        if self.precision not in tf_train.PRECISIONS:
            raise UserError(f"--precision must be one of {tf_train.PRECISIONS}, got {self.precision!r}")


def xla_by_default(device_kind: str) -> bool:
    """What `--xla auto` does on a 'cpu' or a 'gpu'. GPU: XLA (convolutions stay on cuDNN and XLA fuses
    the batch norms and the update; a documented choice, not measured in our CPU-only environment).
    CPU: no XLA. XLA's CPU backend runs convolutions through its own Eigen kernels instead of oneDNN,
    1.7x (forward) to 2.5x (filter gradient) slower, and no other part of the step gains from it
    (batch norms 0.8x, the update 1.0x), so an XLA step runs at 0.57x the speed of the plain one
    (`python -m ista_tf.bench` prints them side by side; README, Measured)."""
    return device_kind == "gpu"


def use_xla(flag: str) -> bool:
    """--xla on / off, or auto: `xla_by_default` for the device TensorFlow trains on."""
    return flag == "on" or (flag == "auto" and xla_by_default(tf_train.device_kind()))


def now() -> str:
    return str(datetime.datetime.now())


# ----------------------------------------------------------------------------------------------------
# The step: cross-entropy + weight decay; SGD + prox; EMA
# ----------------------------------------------------------------------------------------------------


class IstaTrainer:
    """The model's compiled ISTA training step and its state (step counter, averaged weights)."""

    def __init__(self, model, strategy: tf.distribute.Strategy, cfg: StageConfig, jit_compile: bool):
        self.model, self.strategy, self.cfg = model, strategy, cfg
        for layer in model.layers():
            if isinstance(layer, BatchNorm):
                layer.decay = cfg.bn_decay
        self.variables = model.trainable_variables
        self.kernels = model.weight_decay_kernels() if cfg.weight_decay > 0 else []
        with strategy.scope():
            self.global_step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
            self.ema = tf_train.ExponentialMovingAverage(self.variables, MOVING_AVERAGE_DECAY)
        self.sgd = ista.IstaSGD(self.variables, model, cfg.l1_penalty)
        self.step = tf_train.TrainStep(
            strategy,
            self.variables,
            self._compute_loss,
            self._apply_update,
            global_batch_size=cfg.batch_size // cfg.accum_steps,
            accum_steps=cfg.accum_steps,
            jit_compile=jit_compile,
        )

    def _compute_loss(self, images, labels):
        logits = self.model(images, training=True)
        per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)
        # weight_decay * sum ||W||^2 / 2 over the conv kernels (tf.nn.l2_loss); none for cnn4
        decay = self.cfg.weight_decay * tf.add_n([tf.nn.l2_loss(k) for k in self.kernels]) if self.kernels else 0.0
        correct = tf.reduce_sum(tf.cast(tf.math.in_top_k(labels, logits, 1), tf.float32))  # for the metrics log
        return per_example, decay, {"correct": correct}

    def _apply_update(self, grads):
        lr = ista.learning_rate(self.cfg.learning_rate, self.global_step, self.cfg.batch_size)
        self.sgd(grads, lr)  # SGD on all variables, then Eq. (2) on the penalised gammas
        self.global_step.assign_add(1)
        self.ema.update(self.variables, self.global_step)  # num_updates = global_step

    def averaged_model(self):
        """A plain (undistributed) copy of the model holding the averaged weights and the live BN
        moving statistics, as the original restores `variables_to_restore()` before compressing."""
        copy = build_model(self.model.arch, compute_dtype=self.model.compute_dtype)
        for dst, src in zip(copy.variables, self.model.variables):
            dst.assign(src.numpy())
        self.ema.copy_to(copy.trainable_variables)
        return copy


# ----------------------------------------------------------------------------------------------------
# One stage
# ----------------------------------------------------------------------------------------------------


def run_stage(
    cfg: StageConfig,
    train_dir,
    version: int,
    train_split: ArraySplit,
    *,
    records_dir=None,
    on_step: Callable[[int], None] | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """`_run_stage` holding the stage folder's lock (a second run in the same folder is refused, naming
    the process that holds it); a checkpoint that TensorFlow cannot write names the folder and the cause."""
    cfg.validate()
    check_count("--checkpoint_version", version, 0)
    here = chain.stage_dir(train_dir, version)
    if records_dir:  # the stage's record is written at its end: prove first that it can be
        check_writable(Path(records_dir) / "ista", "run record")
    # under multi-worker training only the chief writes in the folder, so only it holds the lock
    lock = RunFolderLock(here, f"stage {version}") if chain.chief_task() else contextlib.nullcontext()
    with lock:
        try:
            return _run_stage(cfg, train_dir, version, train_split, records_dir=records_dir, on_step=on_step, log=log)
        except (tf.errors.ResourceExhaustedError, tf.errors.PermissionDeniedError) as err:
            cause = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise WriteFailed(f"cannot write the checkpoints of stage {version} in {here}: {cause}") from err


def _run_stage(
    cfg: StageConfig,
    train_dir,
    version: int,
    train_split: ArraySplit,
    *,
    records_dir=None,
    on_step: Callable[[int], None] | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Train stage `version` of the chain in `<train_dir>_<version>`; write `<train_dir>_<version+1>`.

    Returns a summary dict ({"status": "finished-before"} when the stage was already done). `on_step`
    is called after every update with the step number (tests use it to interrupt a run).
    """
    # --- Setup ------------------------------------------------------------------------------------
    cfg.validate()
    if version < 0:
        raise UserError(f"--checkpoint_version must be >= 0, got {version}")
    here, nxt = chain.stage_dir(train_dir, version), chain.compact_dir(train_dir, version + 1)
    settings, data_identity = cfg.settings(), train_split.identity()
    done_message = chain.check_stage_can_run(train_dir, version, settings, data_identity)
    if done_message:
        log(done_message)
        return {"status": "finished-before", "message": done_message}
    strategy = tf_train.make_strategy(cfg.distribute)
    jit_compile = use_xla(cfg.xla) and tf_train.xla_possible(strategy)
    dtype = tf_train.compute_dtype(cfg.precision)
    tf_train.set_seed(cfg.seed)

    # --- Model --------------------------------------------------------------------------------------
    prev = chain.compact_dir(train_dir, version)
    arch = full_arch(cfg.model) if version == 0 else chain.read_arch(prev, cfg.model)
    with strategy.scope():
        model = build_model(arch, seed=cfg.seed, compute_dtype=dtype)
    if version > 0:
        chain.restore_compact(model, prev)  # averaged weights of the previous stage
    ista.rescale_gamma_w(model, cfg.alpha)  # paper step 2 (no-op for alpha = 1)

    # --- Optimizer, schedule, checkpoint/resume -----------------------------------------------------
    trainer = IstaTrainer(model, strategy, cfg, jit_compile)
    lambdas = ista.penalty_weights(model)
    keeper = tf_train.CheckpointKeeper(here / "train", strategy, model=model, ema=trainer.ema, step=trainer.global_step)
    resumed = chain.restore_for_resume(keeper, log)  # a damaged newest checkpoint: the one before
    step = int(trainer.global_step.numpy())
    chief = tf_train.is_chief(strategy)  # under multi-worker training only the chief writes files
    if chief and not resumed:  # (re)started: these settings and data define the stage from now on
        chain.write_json(
            here / "stage.json",
            {"settings": settings, "data": data_identity, "arch": arch, "version": version},
        )
    log(
        f"stage {version} ({here}): {cfg.model} widths {arch['widths']}, "
        f"{flops.total_params(model):,} params, "
        f"l1_penalty {cfg.l1_penalty}, lr {cfg.learning_rate}, batch {cfg.batch_size}"
        f"{f' = {cfg.accum_steps} x {cfg.batch_size // cfg.accum_steps}' if cfg.accum_steps > 1 else ''}, "
        f"{tf_train.describe(strategy)}, xla {'on' if jit_compile else 'off'}, sum lambda*C "
        f"{ista.weight_edge_count(model):.2f}" + (f"; resuming from {resumed} (step {step})" if resumed else "")
    )

    # --- Train loop ---------------------------------------------------------------------------------
    micro_batch = cfg.batch_size // cfg.accum_steps
    batches = iter(data.train_dataset(train_split, micro_batch, cfg.seed, start=step * cfg.batch_size))
    bar = tf_train.progress(cfg.max_steps, f"stage {version}", initial=step)
    write = bar.write if not bar.disable else log
    start_step, t_start = step, time.time()
    t_log, step_log = t_start, step
    # the clock trigger is agreed between workers, so that all save at the same step
    saves = tf_train.SaveTrigger(strategy, cfg.save_checkpoint_steps, cfg.save_checkpoint_secs)
    # metrics.jsonl + TensorBoard events in the stage folder, written by the chief only
    metrics_log = tf_train.MetricsWriter(here, enabled=chief)
    loss = float("nan")
    try:
        while step < cfg.max_steps:
            for _ in range(cfg.accum_steps):
                images, labels = next(batches)
                metrics = trainer.step(images, labels)
            step += 1
            loss = float(metrics["loss"])
            if not math.isfinite(loss):  # the original's NanTensorHook
                raise UserError(
                    f"model diverged with loss = {loss} at step {step} of stage {version}; "
                    "try a smaller --learning_rate or --l1_penalty"
                )
            if step % cfg.log_frequency == 0:
                gammas = ista.raw_gammas(model)
                elapsed = time.time() - t_log
                per_batch = elapsed / max(step - step_log, 1)
                write(
                    f"{now()}: step {step}, loss = {loss:.2f}, "
                    f"group lasso = {ista.group_lasso(gammas, lambdas):.2f}, "
                    f"fake sparsity = {ista.fake_sparsity(gammas, lambdas):.2f}, "
                    f"({cfg.batch_size / per_batch:.1f} examples/sec; {per_batch:.3f} sec/batch)"
                )
                metrics_log.scalars(
                    step,
                    {
                        "loss": loss,
                        # top-1 on the last micro-batch of this update (the whole batch when accum_steps = 1)
                        "train_accuracy": float(metrics["correct"]) / micro_batch,
                        "learning_rate": float(ista.learning_rate(cfg.learning_rate, step, cfg.batch_size)),
                        "group_lasso": ista.group_lasso(gammas, lambdas),
                        "fake_sparsity": ista.fake_sparsity(gammas, lambdas),
                        "examples_per_sec": cfg.batch_size / per_batch,
                    },
                    stage=version,
                )
                t_log, step_log = time.time(), step
            if saves.due(step):
                keeper.save(step)
                saves.saved()
            bar.update(1)
            if on_step is not None:
                on_step(step)
    except KeyboardInterrupt:
        keeper.save(step)
        log(f"interrupted: checkpoint of step {step} saved in {here / 'train'}; run the same command to resume")
        raise
    finally:
        bar.close()
        metrics_log.close()
    train_seconds = time.time() - t_start
    if keeper.saved_step != step:  # the same answer on every worker (keeper.latest is the chief's folder)
        keeper.save(step)
    keeper.close()
    examples_per_sec = (step - start_step) * cfg.batch_size / train_seconds if step > start_step else None

    # --- Compress and write results -----------------------------------------------------------------
    gammas = ista.raw_gammas(model)
    averaged = trainer.averaged_model()
    ista.rescale_gamma_w(averaged, 1.0 / cfg.alpha)  # paper step 5
    if cfg.squeeze_model:
        compact, pruned = prune.compress(averaged, gammas, cfg.fold, seed=cfg.seed, compute_dtype=dtype)
    else:
        compact, pruned = averaged, None
    params_full = flops.total_params(build_model(full_arch(cfg.model)))
    params_before, params_after = flops.total_params(averaged), flops.total_params(compact)
    summary = {
        "version": version,
        "steps": step,
        "loss": loss,
        "group_lasso": ista.group_lasso(gammas, lambdas),
        "fake_sparsity": ista.fake_sparsity(gammas, lambdas),
        "zero_gammas": int(sum(np.count_nonzero(g == 0) for g in gammas.values())),
        "widths_before": list(arch["widths"]),
        "widths_after": list(compact.widths),
        "params_before": params_before,
        "params_after": params_after,
        "params_full": params_full,
        "params_reduction_pct": 100.0 * (1 - params_after / params_full),
        "forced_one_channel": pruned.forced if pruned else [],
        "examples_per_sec": examples_per_sec,
        "train_seconds": train_seconds,
    }
    entry = {"version": version, "settings": settings, "data": data_identity, "result": summary}
    lineage = chain.read_lineage(prev) + [entry] if version > 0 else [entry]
    if not chief:
        return {"status": "trained", **summary}
    chain.write_compact(compact, nxt, lineage)
    if pruned is not None:
        chain.write_json(here / "pruned_channels.json", pruned.to_json())
    record = stage_record(cfg, version, summary, lineage, data_identity, strategy, jit_compile, here)
    chain.write_json(here / "record.json", record)
    if records_dir:
        write_record(record, records_dir)
    chain.write_json(
        here / "finished.json", {"settings": settings, "data": data_identity, "result": summary, "next": str(nxt)}
    )
    if pruned and pruned.forced:
        log(
            f"note: every gamma of {', '.join(pruned.forced)} is zero; kept the channel with the "
            "largest averaged |gamma| in each (the original crashes here)"
        )
    log(
        f"stage {version} done: {summary['zero_gammas']} zero gammas, "
        f"fake sparsity {summary['fake_sparsity']:.2f}, group lasso {summary['group_lasso']:.2f}; "
        f"widths {summary['widths_before']} -> {summary['widths_after']}; "
        f"total params {params_before:,} -> {params_after:,} "
        f"({summary['params_reduction_pct']:.1f}% below the full {cfg.model}); "
        f"compact model ({cfg.fold} fold) in {nxt}"
    )
    return {"status": "trained", **summary}


# ----------------------------------------------------------------------------------------------------
# Eval
# ----------------------------------------------------------------------------------------------------


def evaluate(model, split: ArraySplit, batch_size: int = 125, jit_compile: bool = False) -> dict:
    """precision@1 (in_top_k, k = 1) and mean cross-entropy over every image of `split`. A last, smaller
    batch is padded and masked (inference-mode batch norm treats images independently), so the step
    is traced once."""

    def eval_step(images, labels, valid):
        logits = model(images, training=False)
        correct = tf.reduce_sum(valid * tf.cast(tf.math.in_top_k(labels, logits, 1), tf.float32))
        return correct, tf.reduce_sum(valid * tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))

    step = tf_train.compile_fn(eval_step, jit_compile)
    correct = loss = 0.0
    for images, labels in data.eval_dataset(split, batch_size):
        n = int(labels.shape[0])
        pad = batch_size - n
        if pad:
            images = tf.pad(images, [[0, pad], [0, 0], [0, 0], [0, 0]])
            labels = tf.pad(labels, [[0, pad]])
        c, l = step(images, labels, tf.sequence_mask(n, batch_size, tf.float32))
        correct, loss = correct + float(c), loss + float(l)
    n = len(split)
    return {"precision_at_1": correct / n, "test_loss": loss / n, "n": n}


# ----------------------------------------------------------------------------------------------------
# Run records
# ----------------------------------------------------------------------------------------------------


def record_variant(settings: dict, *, stage: int | None = None, version: int | None = None) -> dict:
    """The variant of a run record. Two distinct labels: `stage` "stageN" on the record of training
    stage N (`cifar10_train --checkpoint_version N`: starts from version N, writes version N+1), and
    `version` "vN" on the record of an evaluated version N (`cifar10_eval --checkpoint_version N`).
    `settings` are the stage's (for a version: those of the stage that produced it)."""
    if (stage is None) == (version is None):
        raise ValueError("record_variant needs exactly one of stage= and version=")
    label = {"stage": f"stage{stage}"} if stage is not None else {"version": f"v{version}"}
    return {
        "model": settings["model"],
        **label,
        "fold": settings["fold"],
        "alpha": float(settings["alpha"]),
        "l1_penalty": float(settings["l1_penalty"]),
        # settings a run may change away from the README's (the reported rows name the README's values)
        "bn_decay": float(settings.get("bn_decay", BN_DECAY)),
        "precision": settings.get("precision", "float32"),
        "accum_steps": int(settings.get("accum_steps", 1)),
    }


def stage_record(
    cfg: StageConfig,
    version: int,
    summary: dict,
    lineage: list[dict],
    data_identity: dict,
    strategy,
    jit_compile: bool,
    run_dir: Path,
) -> dict:
    """Run record of a training stage: kind 'reproduction' only for a stage of the README chain or of the
    paper's model A/B chains (same steps, penalties, learning rates) on the full CIFAR-10, else 'smoke'.
    Stage 1 of resnet20 is compared with the README's log line (fake sparsity, group lasso)."""
    row = "readme/cifar10/resnet20/stage1-log" if (cfg.model == "resnet20" and version == 1) else None
    metrics = {k: summary[k] for k in ("group_lasso", "fake_sparsity", "params_reduction_pct")}
    metrics.update(
        params=summary["params_after"],
        channels_removed=sum(summary["widths_before"]) - sum(summary["widths_after"]),
    )
    for key in (
        "loss",
        "examples_per_sec",
    ):  # absent when this process ran no step (stage resumed at its end)
        if summary[key] is not None and math.isfinite(summary[key]):
            metrics[key] = summary[key]
    return make_record(
        paper="ista",
        row=row,
        kind="reproduction" if any(chain.chain_matches(r, lineage) for r in (None, *chain.PAPER_CHAINS)) else "smoke",
        metrics=metrics,
        data=data_identity,
        variant=record_variant(cfg.settings(), stage=version),
        convention=flops.CONVENTION,
        seed=cfg.seed,
        config={**cfg.settings(), "checkpoint_version": version},
        timings={"train_seconds": summary["train_seconds"]},
        frameworks=("tensorflow",),
        device=tf_train.device_kind(),
        run_dir=str(run_dir),
        env_extra={"strategy": tf_train.describe(strategy), "xla": jit_compile},
    )
