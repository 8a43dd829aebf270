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
    return model, trainer


def test_xla_and_plain_steps_agree():
    plain, plain_trainer = _ista_update(False)
    xla, xla_trainer = _ista_update(True)
    assert xla_trainer.step.jit_compile and not plain_trainer.step.jit_compile
    for a, b in zip(plain.variables, xla.variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=2e-5)
    for a, b in zip(plain_trainer.ema.shadows, xla_trainer.ema.shadows):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=2e-5)
    zeros = [np.flatnonzero(m.units()[1].bn.gamma.numpy() == 0) for m in (plain, xla)]
    np.testing.assert_array_equal(*zeros)
    assert zeros[0].size > 0, "the prox should have zeroed the small gammas"


def test_xla_auto_compiles_on_gpus_only():
    # XLA's CPU convolutions are slower than oneDNN's (`python -m ista_tf.bench`), so auto leaves it off there
    assert xla_by_default("gpu") and not xla_by_default("cpu")
    assert use_xla("on") and not use_xla("off")
    assert use_xla("auto") == (tf_train.device_kind() == "gpu")


def test_two_cpu_replicas_agree_with_one_on_the_same_global_batch(replica_check):
    # tests/ista/replica_check.py, in a fresh interpreter started in the background (conftest.py)
    returncode, stdout, stderr = replica_check.result(timeout=300)
    assert returncode == 0, stderr[-2000:]
    result = json.loads(stdout.strip().splitlines()[-1])
    assert result["replicas"] == 2 and result["steps"] == [1, 1]
    assert result["zeros"][0] == result["zeros"][1] > 0
    # global batch 9 split 4 + 5; the update moves weights by up to ~0.2, replicas agree to float noise
    assert result["largest_update"] > 0.05
    assert result["max_variable_diff"] < 5e-5 and result["max_average_diff"] < 5e-5
    # two stages of a chain under MirroredStrategy in one process: train, prune, write, train the pruned
    # model (all-reduces of other shapes), evaluate the smaller model
    stage = result["stage"]
    assert stage["steps"] == [6, 2] and stage["one_strategy"]
    assert sum(stage["widths"][0]) < 96 + 192 + 192 + 384 and stage["widths"][1] == stage["widths"][0]
    assert stage["params"] < 1_986_760


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


def test_strategy_and_precision_choices():
    assert tf_train.make_strategy("default").num_replicas_in_sync == 1
    assert tf_train.compute_dtype("float32") == tf.float32
    assert tf_train.compute_dtype("mixed_bfloat16") == tf.bfloat16
    assert tf_train.compute_dtype("auto") == (tf.bfloat16 if tf_train.device_kind() == "gpu" else tf.float32)
    with pytest.raises(ValueError, match="unknown strategy"):
        tf_train.make_strategy("ring")
