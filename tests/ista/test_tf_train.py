"""shared.tf_train and the ISTA step built on it: XLA = no XLA, 2 replicas = 1 replica, k micro-batches
accumulated = one big batch, EMA rule, checkpoint resume of the keeper."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytestmark = pytest.mark.tf

tf = pytest.importorskip("tensorflow")

from ista_tf.models import CNN4  # noqa: E402
from ista_tf.train import IstaTrainer, StageConfig, use_xla, xla_by_default  # noqa: E402
from shared import tf_train  # noqa: E402


class TinyNet(tf.Module):
    """No batch-dependent layer: accumulating micro-batches must equal one big batch exactly."""

    def __init__(self):
        super().__init__()
        self.kernel = tf.Variable(tf.random.stateless_normal([3, 3, 3, 4], seed=(1, 1)) * 0.3)
        self.dense = tf.Variable(tf.random.stateless_normal([4, 10], seed=(1, 2)) * 0.3)

    def __call__(self, x):
        h = tf.nn.relu(tf.nn.conv2d(x, self.kernel, 2, "SAME"))
        return tf.reduce_mean(h, [1, 2]) @ self.dense


def _tiny_step(model, batch, accum):
    def compute_loss(x, y):
        per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(y, model(x))
        return (
            per_example,
            0.01 * tf.nn.l2_loss(model.kernel),
            {"correct": tf.reduce_sum(tf.cast(tf.argmax(model(x), 1, output_type=tf.int32) == y, tf.float32))},
        )

    def apply_update(grads):
        for v, g in zip(model.trainable_variables, grads):
            v.assign_sub(0.5 * g)

    return tf_train.TrainStep(
        tf.distribute.get_strategy(),
        model.trainable_variables,
        compute_loss,
        apply_update,
        global_batch_size=batch // accum,
        accum_steps=accum,
    )


def test_accumulating_k_micro_batches_equals_one_big_batch():
    x = tf.random.stateless_normal([16, 8, 8, 3], seed=(2, 0))
    y = tf.random.stateless_uniform([16], seed=(2, 1), maxval=10, dtype=tf.int32)
    big, small = TinyNet(), TinyNet()
    big_step, small_step = _tiny_step(big, 16, 1), _tiny_step(small, 16, 4)
    for _ in range(2):
        big_metrics = big_step(x, y)
        assert big_step.applied
        micro_losses, correct = [], 0.0
        for i in range(4):
            m = small_step(x[4 * i : 4 * i + 4], y[4 * i : 4 * i + 4])
            assert small_step.applied == (i == 3)
            if i < 3:  # nothing applied before the k-th micro-batch
                assert not np.allclose(small.dense.numpy(), big.dense.numpy())
            micro_losses.append(float(m["loss"]))
            correct += float(m["correct"])
        for a, b in zip(small.trainable_variables, big.trainable_variables):
            np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6)
        # each micro-batch reports its own mean loss; their mean is the big batch's
        assert np.mean(micro_losses) == pytest.approx(float(big_metrics["loss"]), abs=1e-5)
    assert correct == pytest.approx(float(big_metrics["correct"]))
    # each compiled step was traced once: no retracing from call to call
    assert big_step._accumulate_and_apply.experimental_get_tracing_count() == 1
    assert small_step._accumulate.experimental_get_tracing_count() == 1
    assert small_step._accumulate_and_apply.experimental_get_tracing_count() == 1


def _ista_update(jit_compile: bool):
    model = CNN4((8, 16, 16, 32), seed=5)
    model.units()[1].bn.gamma.assign(np.linspace(-0.6, 0.6, 16).astype("f"))
    trainer = IstaTrainer(
        model,
        tf.distribute.get_strategy(),
        StageConfig(model="cnn4", l1_penalty=1.0, batch_size=8),
        jit_compile,
    )
    x = tf.random.stateless_normal([8, 32, 32, 3], seed=(3, 0))
    y = tf.random.stateless_uniform([8], seed=(3, 1), maxval=10, dtype=tf.int32)
    trainer.step(x, y)
    return model, trainer, (x, y)


def test_xla_and_plain_steps_agree():
    """cnn4 here; resnet20 with weight decay in the background check (replica_check.py, below)."""
    plain, plain_trainer, batch = _ista_update(False)
    xla, xla_trainer, _ = _ista_update(True)
    assert _compiled_with_xla(xla_trainer.step, batch) and not _compiled_with_xla(plain_trainer.step, batch)
    for a, b in zip(plain.variables, xla.variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=2e-5)
    for a, b in zip(plain_trainer.ema.shadows, xla_trainer.ema.shadows):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=2e-5)
    zeros = [np.flatnonzero(m.units()[1].bn.gamma.numpy() == 0) for m in (plain, xla)]
    np.testing.assert_array_equal(*zeros)
    assert zeros[0].size > 0, "the prox should have zeroed the small gammas"


def _compiled_with_xla(step, batch) -> bool:
    """Whether the traced update carries XLA's must-compile mark (what jit_compile=True sets)."""
    concrete = step._accumulate_and_apply.get_concrete_function(*batch)
    attr = concrete.function_def.attr
    return "_XlaMustCompile" in attr and attr["_XlaMustCompile"].b


def test_xla_auto_compiles_on_gpus_only():
    """--xla auto: an XLA-compiled step on a GPU, a plain one on a CPU (XLA's CPU convolutions are
    slower than oneDNN's, `python -m ista_tf.bench`); on and off force it. Checked on the traced step."""
    assert xla_by_default("gpu") and not xla_by_default("cpu")
    x = tf.random.stateless_normal([4, 32, 32, 3], seed=(4, 0))
    y = tf.random.stateless_uniform([4], seed=(4, 1), maxval=10, dtype=tf.int32)
    on_gpu = tf_train.device_kind() == "gpu"
    assert (use_xla("auto"), use_xla("on"), use_xla("off")) == (on_gpu, True, False)
    # the step that auto gives (on and off: the two traced steps of test_xla_and_plain_steps_agree)
    model = CNN4((4, 4, 4, 4), seed=1)
    trainer = IstaTrainer(model, tf.distribute.get_strategy(), StageConfig(model="cnn4", batch_size=4), use_xla("auto"))
    assert _compiled_with_xla(trainer.step, (x, y)) == on_gpu


def _background_result(replica_check) -> dict:
    # tests/ista/replica_check.py, in a fresh interpreter started in the background (conftest.py)
    returncode, stdout, stderr = replica_check.result(timeout=540)  # generous: slow when other jobs share the cores
    assert returncode == 0, stderr[-2000:]
    return json.loads(stdout.strip().splitlines()[-1])


def test_two_cpu_replicas_agree_with_one_on_the_same_global_batch(replica_check):
    result = _background_result(replica_check)
    assert result["replicas"] == 2 and result["steps"] == [1, 1]
    assert result["zeros"][0] == result["zeros"][1] > 0
    # global batch 9 split 4 + 5; the update moves weights by up to ~0.2, replicas agree to float noise,
    # well below the weight decay's share of the update (decay per replica instead of per update: 2x)
    assert result["largest_update"] > 0.05
    assert result["max_variable_diff"] < 5e-5 and result["max_average_diff"] < 5e-5
    assert result["weight_decay"]["largest_effect"] > 10 * 5e-5
    # two stages of a chain under MirroredStrategy in one process: train, prune, write, train the pruned
    # model (all-reduces of other shapes), evaluate the smaller model
    stage = result["stage"]
    assert stage["steps"] == [6, 2] and stage["one_strategy"]
    assert sum(stage["widths"][0]) < 8 + 12 + 12 + 16 and stage["widths"][1] == stage["widths"][0]
    assert stage["params"][1] < stage["params"][0]  # the evaluated version 3 is the pruned model


def test_resnet20_xla_step_with_weight_decay_equals_the_plain_step(replica_check):
    """resnet20 with weight decay 0.05: XLA-compiled and plain updates agree; the decay's share of the
    update is -lr wd W on every conv kernel (so the decay is in the loss, once)."""
    result = _background_result(replica_check)
    xla = result["xla"]
    assert xla["compiled"] == [False, True] and xla["zeros"] == result["zeros"][0] > 0
    # float reassociation over 19 convs and batch norms at batch 9 (measured 4.8e-4; cnn4: < 2e-5), far
    # below the update itself (up to ~0.2)
    assert xla["max_variable_diff"] < 1e-3 and xla["max_average_diff"] < 1e-3
    wd = result["weight_decay"]
    assert wd["kernels"] >= 19 and wd["max_error"] < 2e-6 and wd["largest_effect"] > 100 * 2e-6


def test_exponential_moving_average_follows_the_num_updates_rule():
    v = tf.Variable([1.0, -2.0])
    ema = tf_train.ExponentialMovingAverage([v], decay=0.999)
    v.assign([3.0, 0.0])
    ema.update([v], num_updates=tf.constant(1))  # decay = min(0.999, 2 / 11)
    d = 2.0 / 11.0
    np.testing.assert_allclose(ema.shadows[0].numpy(), [d * 1 + (1 - d) * 3, d * -2 + (1 - d) * 0], rtol=1e-6)
    ema.update([v], num_updates=tf.constant(10**6))  # decay capped at 0.999
    expected = 0.999 * np.array([d * 1 + (1 - d) * 3, d * -2]) + 0.001 * np.array([3.0, 0.0])
    np.testing.assert_allclose(ema.shadows[0].numpy(), expected, rtol=1e-5)
    target = tf.Variable([0.0, 0.0])
    ema.copy_to([target])
    np.testing.assert_allclose(target.numpy(), expected, rtol=1e-5)


def test_checkpoint_keeper_saves_and_resumes(tmp_path):
    v = tf.Variable(1.0)
    keeper = tf_train.CheckpointKeeper(tmp_path / "ckpt", v=v)
    assert keeper.restore_latest() is None
    for step in (1, 2, 3, 4):
        v.assign(float(step))
        keeper.save(step)
    assert keeper.latest.endswith("ckpt-4") and len(keeper.manager.checkpoints) == 3
    w = tf.Variable(0.0)
    assert tf_train.CheckpointKeeper(tmp_path / "ckpt", v=w).restore_latest().endswith("ckpt-4")
    assert float(w.numpy()) == 4.0


def test_mixed_bfloat16_runs_the_forward_in_bfloat16_with_float32_variables():
    x = tf.random.stateless_normal([4, 32, 32, 3], seed=(5, 0))
    full = CNN4((8, 8, 8, 8), seed=2, compute_dtype=tf_train.compute_dtype("float32"))
    half = CNN4((8, 8, 8, 8), seed=2, compute_dtype=tf_train.compute_dtype("mixed_bfloat16"))
    assert all(v.dtype == tf.float32 for v in half.variables)
    a, b = full(x, training=False).numpy(), half(x, training=False).numpy()
    scale = float(np.abs(a).max())
    # bfloat16 keeps 8 significant bits: differences of ~1e-2 relative, none in float32
    assert 1e-4 * scale < float(np.abs(a - b).max()) < 0.1 * scale
    assert tf_train.compute_dtype("auto") == (tf.bfloat16 if tf_train.device_kind() == "gpu" else tf.float32)


def test_strategy_auto_is_one_device_without_gpus_or_workers(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    if tf_train.device_kind() == "gpu":
        pytest.skip("checks the CPU choice")
    strategy = tf_train.make_strategy("auto")
    assert strategy is tf.distribute.get_strategy() and tf_train.describe(strategy) == "one device"
    assert tf_train.make_strategy("default") is strategy
    with pytest.raises(ValueError, match="unknown strategy"):
        tf_train.make_strategy("ring")


def test_accumulation_with_batch_norm_equals_one_batch_and_updates_statistics_k_times():
    """cnn4 (batch norm) trained on [a; a] in one batch and as 2 accumulated micro-batches a, a: each
    micro-batch has the big batch's statistics, so the weights agree; the moving statistics, updated
    once per forward pass, move twice per step: mean (1 - d^2) mu instead of (1 - d) mu."""
    d = 0.9
    a = tf.random.stateless_normal([4, 32, 32, 3], seed=(6, 0))
    ya = tf.random.stateless_uniform([4], seed=(6, 1), maxval=10, dtype=tf.int32)
    models = []
    for accum in (1, 2):
        model = CNN4((8, 8, 8, 8), seed=3)
        cfg = StageConfig(model="cnn4", l1_penalty=0.1, batch_size=8, accum_steps=accum, bn_decay=d)
        trainer = IstaTrainer(model, tf.distribute.get_strategy(), cfg, False)
        if accum == 1:
            trainer.step(tf.concat([a, a], 0), tf.concat([ya, ya], 0))
        else:
            trainer.step(a, ya)
            trainer.step(a, ya)
        assert int(trainer.global_step.numpy()) == 1
        models.append(model)
    big, acc = models
    for u, v in zip(big.trainable_variables, acc.trainable_variables):
        np.testing.assert_allclose(u.numpy(), v.numpy(), atol=1e-5)
    mu = big.bns[0].moving_mean.numpy() / (1 - d)  # the first layer's batch mean
    assert np.abs(mu).max() > 1e-3
    np.testing.assert_allclose(acc.bns[0].moving_mean.numpy(), (1 - d * d) * mu, rtol=1e-4, atol=1e-6)
    var = (big.bns[0].moving_variance.numpy() - d) / (1 - d)  # its (unbiased) batch variance
    np.testing.assert_allclose(acc.bns[0].moving_variance.numpy(), d * d + (1 - d * d) * var, rtol=1e-4)
