"""The fine-tuning step against independent computations: Nesterov SGD + weight decay by hand, XLA =
plain, k accumulated micro-batches = the sum of their gradients, 2 CPU replicas = 1 (fine-tuning step
and one search iteration, in a fresh interpreter), resume after interruption = uninterrupted run."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytestmark = pytest.mark.tf

tf = pytest.importorskip("tensorflow")

from ekg_tf2 import params  # noqa: E402
from ekg_tf2.models import ResNet  # noqa: E402
from ekg_tf2.train import FinetuneConfig, FineTuner, learning_rate, run_finetune  # noqa: E402
from shared.tf_train import functions_run_eagerly  # noqa: E402


def _model(seed=1):
    model = ResNet("ResNet-8", 10, seed=seed)
    for name, layer in model.layers.items():
        if name.endswith("bn2"):
            layer.gamma.assign(tf.ones_like(layer.gamma) * 0.5)
    return model


def _batch(n=8, seed=0):
    x = tf.random.stateless_normal([n, 32, 32, 3], seed=(seed, 1))
    y = tf.random.stateless_uniform([n], seed=(seed, 2), maxval=10, dtype=tf.int32)
    return x, y


def _grads_by_hand(model, x, y, wd):
    """Gradient of mean CE over the batch + wd/2 sum ||v||^2 (batch statistics of this batch)."""
    variables = model.weight_variables()
    with tf.GradientTape() as tape:
        logits = model(x, training=True, update=False)
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits))
        loss += 0.5 * wd * tf.add_n([tf.reduce_sum(v * v) for v in variables])
    return [g.numpy() for g in tape.gradient(loss, variables)]


def test_step_is_nesterov_sgd_with_weight_decay_on_every_variable():
    model, ref = _model(), _model()
    x, y = _batch()
    cfg = FinetuneConfig(batch_size=8, learning_rate=0.1, weight_decay=5e-4)
    tuner = FineTuner(model, tf.distribute.get_strategy(), cfg, jit_compile=False)
    w0 = [v.numpy() for v in ref.weight_variables()]
    vel = [np.zeros_like(w) for w in w0]
    for _ in range(2):
        g = _grads_by_hand(ref, x, y, 5e-4)
        for i, v in enumerate(ref.weight_variables()):
            vel[i] = 0.9 * vel[i] - 0.1 * g[i]
            v.assign(v.numpy() + 0.9 * vel[i] - 0.1 * g[i])  # Keras-2 Nesterov form
        tuner.update(x, y)
    for a, b in zip(model.weight_variables(), ref.weight_variables()):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=2e-5)
    assert max(np.abs(a - v.numpy()).max() for a, v in zip(w0, ref.weight_variables())) > 1e-3


def test_learning_rate_steps_at_30_60_80_percent():
    cfg = FinetuneConfig()
    assert [learning_rate(cfg, e) for e in (0, 29, 30, 59, 60, 80, 99)] == pytest.approx(
        [0.01, 0.01, 0.002, 0.002, 0.0004, 0.00008, 0.00008]
    )


def test_xla_and_plain_steps_agree():
    x, y = _batch()
    out = []
    for jit in (False, True):
        model = _model()
        tuner = FineTuner(model, tf.distribute.get_strategy(), FinetuneConfig(batch_size=8), jit_compile=jit)
        assert tuner.step.jit_compile == jit
        tuner.update(x, y)
        out.append([v.numpy() for v in model.variables])
    for a, b in zip(*out):
        np.testing.assert_allclose(a, b, atol=3e-5)


def test_accumulated_micro_batches_sum_their_gradients():
    # with BN, k micro-batches equal k separate batch-statistics passes (not one big batch): the update
    # must be SGD on the mean of the micro-batches' gradients
    model, ref = _model(), _model()
    x, y = _batch(8)
    cfg = FinetuneConfig(batch_size=8, accum=2, learning_rate=0.1, weight_decay=5e-4)
    tuner = FineTuner(model, tf.distribute.get_strategy(), cfg, jit_compile=False)
    tuner.update(x, y)
    g1, g2 = _grads_by_hand(ref, x[:4], y[:4], 5e-4), _grads_by_hand(ref, x[4:], y[4:], 5e-4)
    for v, a, b in zip(ref.weight_variables(), g1, g2):
        g = (a + b) / 2
        v.assign(v.numpy() - 0.1 * g + 0.9 * (-0.1 * g))
    for a, b in zip(model.weight_variables(), ref.weight_variables()):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=2e-5)
    assert int(tuner.global_step.numpy()) == 1


def test_resume_after_interruption_gives_the_uninterrupted_run(tmp_path, digits_split):
    with functions_run_eagerly(True):  # three runs of a few steps: tracing each would cost more
        _resume_case(tmp_path, digits_split)


def _resume_case(tmp_path, digits_split):
    train, test = digits_split
    src = tmp_path / "slim.pkl"
    params.write_params(src, params.model_params(_model(2)))
    cfg = FinetuneConfig(epochs=2, steps_per_epoch=2, batch_size=8, xla="off", distribute="default")
    quiet = lambda s: None  # noqa: E731
    run_finetune(cfg, "ResNet-8", "CIFAR10", src, tmp_path / "a", train, test, log=quiet)
    # one metrics.jsonl line and TensorBoard scalars per epoch (train loss, lr, test accuracy)
    lines = [json.loads(x) for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [2, 4] and {"train_loss", "learning_rate", "test_acc"} <= set(lines[0])
    assert list((tmp_path / "a" / "tensorboard").glob("events.out.tfevents.*"))

    class Stop(Exception):
        pass

    def stop_at_3(step):
        if step == 3:
            raise Stop

    with pytest.raises(Stop):  # dies after the epoch-1 checkpoint, in the middle of epoch 2
        run_finetune(cfg, "ResNet-8", "CIFAR10", src, tmp_path / "b", train, test, log=quiet, on_step=stop_at_3)
    assert not (tmp_path / "b" / "finetune.json").exists()
    lines = []
    resumed = run_finetune(cfg, "ResNet-8", "CIFAR10", src, tmp_path / "b", train, test, log=lines.append)
    assert any("resuming at step 2" in line for line in lines) and resumed["steps"] == 4
    a = params.read_params(tmp_path / "a" / "trained_params.pkl")
    b = params.read_params(tmp_path / "b" / "trained_params.pkl")
    for k in a:
        np.testing.assert_allclose(a[k], b[k], atol=1e-6, err_msg=k)
    again = run_finetune(cfg, "ResNet-8", "CIFAR10", src, tmp_path / "b", train, test, log=quiet)
    assert again["status"] == "finished-before"  # a finished stage is not rerun


def test_two_cpu_replicas_agree_with_one(replica_check):
    returncode, stdout, stderr = replica_check.result(timeout=400)
    assert returncode == 0, stderr[-3000:]
    r = json.loads(stdout.strip().splitlines()[-1])
    assert r["replicas"] == 2
    # fine-tuning with the memory bank (teacher subset summed over replicas, global-batch BN), batch 9 = 4 + 5
    assert r["finetune_moved"] > 1e-3 and r["finetune_max_diff"] < 5e-5
    # one search iteration: same candidates evaluated, same choice, same scores, same knowledge
    assert r["search_gate"][0] == r["search_gate"][1]
    assert r["search_chosen"][0] == r["search_chosen"][1]
    assert r["search_score_diff"] < 1e-4 and r["knowledge_diff"] < 1e-4
    assert r["bank_diff"] < 1e-4


@pytest.mark.slow
@pytest.mark.timeout(1200)  # ~30 s in the background on an idle machine; allow for a busy one
def test_two_workers_agree_with_one_process(multiworker_check):
    # MultiWorkerMirroredStrategy over 2 local CPU worker processes (TF_CONFIG on loopback ports): the
    # same fine-tuning update and search iteration as one process on the same global batches
    returncode, stdout, stderr = multiworker_check.result(timeout=1000)
    assert returncode == 0, stderr[-3000:]
    a, b = json.loads(stdout.strip().splitlines()[-1])["workers"]
    assert a["replicas"] == b["replicas"] == 2 and a["chief"] and not b["chief"]
    assert a["finetune_checksum"] == pytest.approx(b["finetune_checksum"], rel=1e-6)
    assert a["search_scores"] == pytest.approx(b["search_scores"], rel=1e-6)
    assert a["finetune_moved"] > 1e-3 and a["finetune_max_diff"] < 5e-5
    assert a["search_gate"][0] == a["search_gate"][1] and a["search_chosen"][0] == a["search_chosen"][1]
    assert a["search_score_diff"] < 1e-4 and a["knowledge_diff"] < 1e-4
