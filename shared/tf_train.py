"""TensorFlow 2 training-loop machinery shared by the TF subprojects (ista_tf, and later ekg_tf2, dcp_tf).

This is the one module of `shared` that imports TensorFlow; only TF subprojects import it. It holds
what every TF loop needs and nothing specific to a paper:

- devices and strategies: `make_strategy` (default / one device, MirroredStrategy, MultiWorkerMirrored
  from TF_CONFIG), `use_logical_cpus` (N logical CPU devices, to test distribution on a CPU machine),
  `is_chief`;
- precision: `compute_dtype` ('float32', 'mixed_bfloat16', or 'auto' = bf16 on a GPU, fp32 on a CPU);
- `compile_fn`: the ONE place where `tf.function(jit_compile=...)` is decided;
- `TrainStep`: a compiled step. Loss scaled by the global batch, gradients summed over replicas and over
  k micro-batches (tf.Variable accumulators), one update every k-th call;
- `ExponentialMovingAverage`: averaged weights with tf.train.ExponentialMovingAverage's warm-up rule;
- `CheckpointKeeper`: tf.train.Checkpoint + CheckpointManager with resume (chief writes, others write
  to a scratch folder as tf.distribute requires); `SaveTrigger`: when to save, every N steps and/or
  every N seconds, the clock decision agreed by all workers so that every worker saves at one step;
- `MetricsWriter`: metrics.jsonl + TensorBoard event files (tf.summary) of a run folder, chief only;
- `progress` (tqdm, quiet when stderr is not a terminal) and `set_seed`.

Conventions (ARCHITECTURE.md section 4): the model and its variables are created under
`strategy.scope()`; the per-example loss is summed and divided by the *global* batch, so summing the
replicas' gradients gives the gradient of the mean loss over the global batch whatever the number of
replicas; a regularisation term is divided by the number of replicas for the same reason.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TF loads its C++ runtime: no info logs

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from shared.metrics_log import MetricsLog

# ----------------------------------------------------------------------------------------------------
# Devices and strategies
# ----------------------------------------------------------------------------------------------------

STRATEGIES = ("auto", "default", "mirrored", "multiworker")


def use_logical_cpus(n: int) -> None:
    """Split the CPU into `n` logical devices (/cpu:0 .. /cpu:n-1), e.g. to test MirroredStrategy.

    Must run before TensorFlow initialises its runtime (before the first op or device listing)."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    current = tf.config.get_logical_device_configuration(cpu)
    if current is not None and len(current) == n:
        return
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(n)])
    except RuntimeError as err:
        raise RuntimeError(
            f"cannot split the CPU into {n} logical devices: TensorFlow's runtime is already initialised "
            "(call use_logical_cpus before the first TensorFlow op)"
        ) from err


def _workers_in_tf_config() -> int:
    try:
        cluster = json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {})
    except json.JSONDecodeError as err:
        raise ValueError(f"TF_CONFIG is not valid JSON: {err}") from err
    return sum(len(cluster.get(role, [])) for role in ("chief", "worker"))


_STRATEGIES_MADE: dict[tuple, tf.distribute.Strategy] = {}


def make_strategy(kind: str = "auto", devices: Sequence[str] | None = None) -> tf.distribute.Strategy:
    """A tf.distribute strategy by name.

    auto: MultiWorkerMirroredStrategy when TF_CONFIG lists several workers, MirroredStrategy over all
    GPUs when there are several, OneDeviceStrategy on the single GPU, else the default strategy (one
    CPU replica). mirrored: MirroredStrategy over `devices` (default: the GPUs, else every logical
    CPU). multiworker: MultiWorkerMirroredStrategy (cluster from TF_CONFIG). default: no distribution.

    One process gets one strategy object per (kind, devices): a second MirroredStrategy in the same
    process numbers its collective ops from the start again, so when a later stage all-reduces tensors
    of other shapes (a pruned model), TensorFlow aborts with "Shape mismatch in the collective instance".
    """
    if kind not in STRATEGIES:
        raise ValueError(f"unknown strategy {kind!r}; expected one of {STRATEGIES}")
    if kind == "auto" and _workers_in_tf_config() > 1:
        kind = "multiworker"
    if kind == "multiworker":
        # Before anything that starts TensorFlow's runtime (listing logical devices does): the
        # collective ops of MultiWorkerMirroredStrategy must be configured at program start-up.
        key = ("multiworker", ())
        if key not in _STRATEGIES_MADE:
            _STRATEGIES_MADE[key] = tf.distribute.MultiWorkerMirroredStrategy()
        return _STRATEGIES_MADE[key]
    gpus = tf.config.list_logical_devices("GPU")
    if kind == "auto":
        if len(gpus) > 1:
            kind = "mirrored"
        elif len(gpus) == 1:
            kind, devices = "one_device", [gpus[0].name]
        else:
            kind = "default"
    if kind == "default":
        return tf.distribute.get_strategy()
    if kind == "mirrored" and devices is None:
        devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
    key = (kind, tuple(devices))
    if key not in _STRATEGIES_MADE:
        if kind == "one_device":
            _STRATEGIES_MADE[key] = tf.distribute.OneDeviceStrategy(devices[0])
        else:
            _STRATEGIES_MADE[key] = tf.distribute.MirroredStrategy(list(devices))
    return _STRATEGIES_MADE[key]


def describe(strategy: tf.distribute.Strategy) -> str:
    """e.g. 'MirroredStrategy, 2 replicas' or 'one device' (for logs and run records)."""
    n = strategy.num_replicas_in_sync
    if not tf.distribute.has_strategy() and strategy is tf.distribute.get_strategy():
        return "one device"
    return f"{type(strategy).__name__}, {n} replica{'s' if n != 1 else ''}"


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True on the worker that writes checkpoints and results: the 'chief' task, else worker 0 when the
    cluster has no chief, and always without multi-worker training."""
    resolver = getattr(strategy, "cluster_resolver", None)
    cluster = resolver.cluster_spec().as_dict() if resolver is not None else {}
    if not cluster or resolver.task_type is None:
        return True
    if resolver.task_type == "chief":
        return True
    return resolver.task_type == "worker" and resolver.task_id == 0 and "chief" not in cluster


def device_kind() -> str:
    """'gpu' when TensorFlow sees a GPU, else 'cpu'."""
    return "gpu" if tf.config.list_physical_devices("GPU") else "cpu"


# ----------------------------------------------------------------------------------------------------
# Precision and seeds
# ----------------------------------------------------------------------------------------------------

PRECISIONS = ("auto", "float32", "mixed_bfloat16")


def compute_dtype(precision: str = "float32") -> tf.DType:
    """The dtype convolutions run in. Variables stay float32 in every mode (mixed precision); models
    cast to this dtype in their forward pass. 'auto': bfloat16 on a GPU (no loss scaling needed),
    float32 on a CPU. float16 is not offered: it would need loss scaling."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; expected one of {PRECISIONS}")
    if precision == "auto":
        precision = "mixed_bfloat16" if device_kind() == "gpu" else "float32"
    return tf.bfloat16 if precision == "mixed_bfloat16" else tf.float32


def set_seed(seed: int, deterministic_ops: bool = False) -> None:
    """Seed Python, numpy and TensorFlow; optionally ask TF for deterministic kernels (slower on GPU)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    tf.random.set_seed(seed)
    if deterministic_ops:
        tf.config.experimental.enable_op_determinism()


# ----------------------------------------------------------------------------------------------------
# Compilation: the one place XLA is switched on
# ----------------------------------------------------------------------------------------------------


def xla_possible(strategy: tf.distribute.Strategy) -> bool:
    """XLA compiles a whole step only when it runs on one device. With several replicas the step holds
    cross-device reductions, which XLA cannot place (on logical CPUs it fails outright), so it runs as
    an ordinary graph."""
    return strategy.num_replicas_in_sync == 1


@contextmanager
def functions_run_eagerly(eager: bool = True):
    """Run every tf.function eagerly (or traced) inside the block, then restore the previous setting. For
    smoke runs: a function called once or a few times on a few images (a warm-up step, one evaluation
    batch) costs several times more to trace than to run eagerly."""
    before = tf.config.functions_run_eagerly()
    tf.config.run_functions_eagerly(eager)
    try:
        yield
    finally:
        tf.config.run_functions_eagerly(before)


def compile_fn(
    fn: Callable, jit_compile: bool, strategy: tf.distribute.Strategy | None = None, autograph: bool = True
) -> Callable:
    """`tf.function(fn, jit_compile=...)`: every compiled step of the TF subprojects goes through here.
    autograph=False traces `fn` as plain Python (no control-flow conversion): for code whose `if`/`for`
    never depend on a tensor's value, the same graph, traced in about half the time."""
    if strategy is not None and not xla_possible(strategy):
        jit_compile = False
    return tf.function(fn, jit_compile=bool(jit_compile), autograph=bool(autograph))


# ----------------------------------------------------------------------------------------------------
# The training step: replicas, global-batch loss scaling, gradient accumulation
# ----------------------------------------------------------------------------------------------------

# compute_loss(features, labels) -> (per_example_loss [b], regularisation scalar, {name: scalar})
ComputeLoss = Callable[[tf.Tensor, tf.Tensor], tuple[tf.Tensor, tf.Tensor, dict]]
# apply_update(gradients) -> None; the gradients are summed over replicas and micro-batches
ApplyUpdate = Callable[[list[tf.Tensor]], None]


def split_global_batch(strategy: tf.distribute.Strategy, *tensors: tf.Tensor):
    """Give replica r rows [r*b/R, (r+1)*b/R) of each global-batch tensor (sizes differ by at most one
    row when R does not divide b). Every worker builds the same global batch, so the split, and hence
    the result, does not depend on how many replicas there are."""
    n = strategy.num_replicas_in_sync
    if n == 1:
        return tensors

    def value_fn(ctx: tf.distribute.ValueContext):
        r = ctx.replica_id_in_sync_group
        out = []
        for t in tensors:
            b = int(t.shape[0])
            lo, hi = (r * b) // n, ((r + 1) * b) // n
            out.append(t[lo:hi])
        return tuple(out)

    return strategy.experimental_distribute_values_from_function(value_fn)


class TrainStep:
    """One training step, compiled once.

    Each call takes one (global) micro-batch. The per-example loss is divided by the global batch of
    the whole update (micro-batch x accum_steps) and the regulariser by (replicas x accum_steps), so
    the gradients summed over replicas and micro-batches are those of the mean loss over the full
    batch. With accum_steps = k, the summed gradient is kept in tf.Variable accumulators for k - 1
    calls and `apply_update` runs on the k-th call (then `self.applied` is True).

    Batch-dependent layers (batch norm) see each micro-batch on its own, so accumulation equals one big
    batch exactly only for models without them. Replicas equal one device when such layers reduce their
    batch statistics across replicas (a "synchronised" batch norm, as ista_tf's is).

    `compute_loss` runs in replica context; `apply_update` runs once per update in cross-replica
    context, where assigning a mirrored variable updates every copy.
    """

    def __init__(
        self,
        strategy: tf.distribute.Strategy,
        variables: Sequence[tf.Variable],
        compute_loss: ComputeLoss,
        apply_update: ApplyUpdate,
        *,
        global_batch_size: int,
        accum_steps: int = 1,
        jit_compile: bool = False,
        autograph: bool = True,
    ):
        if accum_steps < 1:
            raise ValueError(f"accum_steps must be >= 1, got {accum_steps}")
        self.strategy = strategy
        self.variables = list(variables)
        self.compute_loss = compute_loss
        self.apply_update = apply_update
        self.global_batch_size = int(global_batch_size)
        self.accum_steps = int(accum_steps)
        self.replicas = strategy.num_replicas_in_sync
        self.jit_compile = bool(jit_compile) and xla_possible(strategy)
        self.micro_step = 0
        self.applied = False
        if self.accum_steps > 1:
            with strategy.scope():
                self.accumulators = [
                    tf.Variable(tf.zeros(v.shape, v.dtype), trainable=False, name="grad_accum") for v in self.variables
                ]
        self._accumulate = compile_fn(lambda x, y: self._step(x, y, apply=False), self.jit_compile, autograph=autograph)
        self._accumulate_and_apply = compile_fn(
            lambda x, y: self._step(x, y, apply=True), self.jit_compile, autograph=autograph
        )

    def _replica_gradients(self, features, labels):
        with tf.GradientTape() as tape:
            per_example, regularization, metrics = self.compute_loss(features, labels)
            per_example = tf.cast(per_example, tf.float32)
            batch_sum = tf.reduce_sum(per_example)
            scaled = batch_sum / float(self.global_batch_size * self.accum_steps) + tf.cast(
                regularization, tf.float32
            ) / float(self.replicas * self.accum_steps)
        grads = tape.gradient(scaled, self.variables)
        missing = [v.name for v, g in zip(self.variables, grads) if g is None]
        if missing:
            raise ValueError(f"no gradient for {missing}: these variables do not affect the loss")
        loss = batch_sum / float(self.global_batch_size) + tf.cast(regularization, tf.float32) / float(self.replicas)
        return grads, loss, metrics

    def _step(self, features, labels, apply: bool):
        grads, loss, metrics = self.strategy.run(self._replica_gradients, args=(features, labels))
        if self.replicas > 1:
            sum_ = tf.distribute.ReduceOp.SUM
            grads = [self.strategy.reduce(sum_, g, axis=None) for g in grads]
            loss = self.strategy.reduce(sum_, loss, axis=None)
            metrics = {k: self.strategy.reduce(sum_, v, axis=None) for k, v in metrics.items()}
        if self.accum_steps > 1:
            if not apply:
                for acc, g in zip(self.accumulators, grads):
                    acc.assign_add(g)
                return {"loss": loss, **metrics}
            grads = [acc + g for acc, g in zip(self.accumulators, grads)]
            for acc in self.accumulators:
                acc.assign(tf.zeros_like(acc))
        self.apply_update(grads)
        return {"loss": loss, **metrics}

    def __call__(self, features, labels) -> dict:
        """Run one micro-batch (global batch); returns {'loss': mean loss incl. regulariser, **metrics}."""
        features, labels = split_global_batch(self.strategy, features, labels)
        self.micro_step += 1
        self.applied = self.micro_step % self.accum_steps == 0
        fn = self._accumulate_and_apply if self.applied else self._accumulate
        return fn(features, labels)


# ----------------------------------------------------------------------------------------------------
# Exponential moving average of weights
# ----------------------------------------------------------------------------------------------------


class ExponentialMovingAverage(tf.Module):
    """Shadow copies s of variables v, updated s <- s - (1 - d) (s - v) after each step, with
    d = min(decay, (1 + t) / (10 + t)) at update number t: the rule of tf.train.ExponentialMovingAverage
    with num_updates. The shadows start at the variables' values when this object is created. Create it
    under the strategy's scope; `update` runs in cross-replica context (e.g. inside `apply_update`).
    """

    def __init__(self, variables: Sequence[tf.Variable], decay: float):
        super().__init__(name="ema")
        self.decay = float(decay)
        self.shadows = [tf.Variable(v.read_value(), trainable=False, name="average") for v in variables]

    def update(self, variables: Sequence[tf.Variable], num_updates: tf.Tensor) -> None:
        t = tf.cast(num_updates, tf.float32)
        decay = tf.minimum(self.decay, (1.0 + t) / (10.0 + t))
        for shadow, var in zip(self.shadows, variables):
            shadow.assign_sub((1.0 - decay) * (shadow - var))

    def copy_to(self, variables: Sequence[tf.Variable]) -> None:
        """Overwrite `variables` with the averages (e.g. to evaluate or export the averaged model)."""
        for shadow, var in zip(self.shadows, variables):
            var.assign(shadow)


# ----------------------------------------------------------------------------------------------------
# Checkpoints with resume
# ----------------------------------------------------------------------------------------------------


class CheckpointKeeper:
    """tf.train.Checkpoint + CheckpointManager in `directory`, resuming from the newest checkpoint.

    TensorFlow writes a checkpoint's data files first and then replaces the small `checkpoint` index
    file atomically, so an interrupted save leaves the index pointing at the previous complete
    checkpoint. Under multi-worker training every worker must take part in a save; only the chief's
    copy is kept (the others write to a scratch folder that is deleted).
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        strategy: tf.distribute.Strategy | None = None,
        max_to_keep: int = 3,
        **trackables,
    ):
        self.directory = os.fspath(directory)
        self.chief = strategy is None or is_chief(strategy)
        self.checkpoint = tf.train.Checkpoint(**trackables)
        self._scratch = None if self.chief else tempfile.mkdtemp(prefix="ckpt-worker-")
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, self._scratch or self.directory, max_to_keep=max_to_keep
        )
        self.saved_step: int | None = None  # step of the newest checkpoint saved or restored, on every worker

    @property
    def latest(self) -> str | None:
        return tf.train.latest_checkpoint(self.directory)

    def restore_latest(self) -> str | None:
        """Restore the newest checkpoint of `directory` (every object must match); its path, or None."""
        path = self.latest
        if path is not None:
            self.checkpoint.restore(path).assert_existing_objects_matched()
            self.saved_step = int(path.rsplit("-", 1)[1])
        return path

    def save(self, step: int) -> str:
        """Save as checkpoint number `step`. Under multi-worker training every worker must call this at
        the same step (decide with `saved_step` or a `SaveTrigger`, never with `latest`, which only the
        chief's folder answers)."""
        path = self.manager.save(checkpoint_number=int(step))
        self.saved_step = int(step)
        return path

    def close(self) -> None:
        """Delete a non-chief worker's scratch copy."""
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)


class SaveTrigger:
    """When to save a checkpoint: every `every_steps` steps and/or every `every_secs` seconds.

    A step count is the same on every worker, a clock is not: under multi-worker training each worker
    would decide on its own clock, and a save (a collective: every worker takes part) at different
    steps deadlocks or mixes steps. So the clock decision is agreed: each worker's "time is up" flag is
    summed over the replicas (an all-reduce), and all save at the step where the first of them found the time up. Call
    `due(step)` once per step on every worker (the same steps everywhere), `saved()` after a save."""

    def __init__(
        self,
        strategy: tf.distribute.Strategy | None = None,
        every_steps: int = 0,
        every_secs: float = 0.0,
        clock: Callable[[], float] = time.time,
    ):
        self.strategy = strategy
        self.every_steps, self.every_secs, self.clock = int(every_steps), float(every_secs), clock
        self.multiworker = isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
        self.last = clock()

    def _agree(self, flag: bool) -> bool:
        if not self.multiworker:
            return flag
        value = self.strategy.experimental_distribute_values_from_function(lambda _: tf.constant(float(flag)))
        return bool(self.strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None).numpy() > 0)

    def due(self, step: int) -> bool:
        if self.every_steps and step % self.every_steps == 0:
            return True
        if self.every_secs <= 0:
            return False
        return self._agree(self.clock() - self.last >= self.every_secs)

    def saved(self) -> None:
        self.last = self.clock()


# ----------------------------------------------------------------------------------------------------
# Metrics: metrics.jsonl + TensorBoard events
# ----------------------------------------------------------------------------------------------------


class MetricsWriter(MetricsLog):
    """`metrics.jsonl` and TensorBoard event files side by side (`shared.metrics_log.MetricsLog`; the same
    interface as `shared.torch_train.MetricsWriter`), the events through tf.summary. Only the chief
    writes: pass `enabled=is_chief(strategy)`."""

    def _open_events(self):
        return tf.summary.create_file_writer(os.fspath(self.events_dir))

    def _add_scalar(self, name: str, value: float, step: int) -> None:
        with self._writer.as_default():
            tf.summary.scalar(name, value, step=step)


# ----------------------------------------------------------------------------------------------------
# Progress
# ----------------------------------------------------------------------------------------------------


def progress(total: int, desc: str = "", initial: int = 0):
    """A tqdm bar on stderr, disabled when stderr is not a terminal (logs, CI)."""
    from tqdm import tqdm

    return tqdm(
        total=total,
        initial=initial,
        desc=desc,
        disable=not sys.stderr.isatty(),
        leave=False,
        dynamic_ncols=True,
    )
