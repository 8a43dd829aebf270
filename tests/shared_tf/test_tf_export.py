"""shared.tf_export: SavedModel, TFLite, ONNX (tf2onnx) and XLA give the model's inference outputs, at
other batch sizes too; missing runtimes are skipped with a reason; tf_train.MetricsWriter writes
metrics.jsonl and TensorBoard events that read back, only where enabled."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytestmark = pytest.mark.tf

tf = pytest.importorskip("tensorflow")

from shared import bench, tf_export, tf_train  # noqa: E402


class SmallNet(tf.Module):
    """Conv + inference-mode batch norm (moving statistics far from 0/1) + residual + pool + FC, as
    tf.Module with tf.nn ops like the subprojects' models. `training=True` normalises with the batch
    statistics, so an export of the training graph gives other outputs."""

    def __init__(self):
        super().__init__()
        rng = np.random.default_rng(0)
        self.k1 = tf.Variable(rng.normal(0, 0.3, [3, 3, 3, 8]).astype("f"))
        self.k2 = tf.Variable(rng.normal(0, 0.3, [3, 3, 8, 8]).astype("f"))
        self.mean = tf.Variable(rng.uniform(-0.5, 0.5, [8]).astype("f"))
        self.var = tf.Variable(rng.uniform(0.5, 2.0, [8]).astype("f"))
        self.gamma = tf.Variable(rng.uniform(0.5, 1.5, [8]).astype("f"))
        self.beta = tf.Variable(rng.uniform(-0.2, 0.2, [8]).astype("f"))
        self.w = tf.Variable(rng.normal(0, 0.3, [8, 10]).astype("f"))
        self.b = tf.Variable(rng.normal(0, 0.1, [10]).astype("f"))

    def __call__(self, x, training=False):
        h = tf.nn.relu(tf.nn.conv2d(x, self.k1, 1, "SAME"))
        z = tf.nn.conv2d(h, self.k2, 1, "SAME")
        if training:
            mean, var = tf.nn.moments(z, [0, 1, 2])
        else:
            mean, var = self.mean, self.var
        h = tf.nn.relu(h + tf.nn.batch_normalization(z, mean, var, self.beta, self.gamma, 1e-3))
        return tf.reduce_mean(h, [1, 2]) @ self.w + self.b


def test_every_runtime_matches_the_model(tmp_path):
    model = SmallNet()
    forward = lambda x: model(x, training=False)  # noqa: E731
    example = np.random.default_rng(1).normal(size=(4, 16, 16, 3)).astype("f")
    skipped = []
    fns = tf_export.runtimes(forward, example, model, names=tf_export.TF_RUNTIMES, workdir=tmp_path, log=skipped.append)
    assert not skipped, skipped  # the export extra is installed: every runtime must be there
    assert set(fns) == {"tf.function", "xla", "tflite", "onnxruntime", "savedmodel"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "model.tflite", "saved"]
    for batch in (4, 7, 1):
        x = np.random.default_rng(batch).normal(size=(batch, 16, 16, 3)).astype("f")
        diffs = tf_export.check_equal(fns, forward, x)
        print(f"batch {batch}: max |runtime - model| {diffs}")
        assert max(diffs.values()) < 2e-5
        train_graph_gap = bench.max_abs_diff(model(x, training=True).numpy(), forward(x).numpy())
        assert batch == 1 or train_graph_gap > 1e-2  # what exporting the training graph would get wrong


def test_savedmodel_reloads_in_a_fresh_object_and_keeps_the_signature(tmp_path):
    model = SmallNet()
    x = np.random.default_rng(2).normal(size=(3, 16, 16, 3)).astype("f")
    path = tf_export.save_savedmodel(lambda t: model(t), x, tmp_path / "sm", model)
    loaded = tf.saved_model.load(str(path))
    out = loaded.signatures["serving_default"](input=tf.constant(x))
    np.testing.assert_allclose(next(iter(out.values())).numpy(), model(x).numpy(), atol=1e-5)
    # exporting again replaces the folder atomically, leaving no temporary folder behind
    model.b.assign(model.b + 1.0)
    tf_export.save_savedmodel(lambda t: model(t), x, path, model)
    np.testing.assert_allclose(tf_export.load_savedmodel(path)(tf.constant(x)).numpy(), model(x).numpy(), atol=1e-5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sm"]


def test_missing_runtime_is_skipped_with_its_reason(monkeypatch):
    def missing(*args, **kwargs):
        raise bench.RuntimeUnavailable("tf2onnx is not installed (test)")

    monkeypatch.setattr(tf_export, "to_onnx", missing)
    model, said = SmallNet(), []
    x = np.zeros((1, 8, 8, 3), "f")
    fns = tf_export.runtimes(lambda t: model(t), x, model, names=("tf.function", "onnxruntime"), log=said.append)
    assert list(fns) == ["tf.function"]
    assert said == ["runtime onnxruntime skipped: tf2onnx is not installed (test)"]
    with pytest.raises(ValueError, match="unknown runtime"):
        tf_export.runtimes(lambda t: model(t), x, model, names=("openvino",))


def _read_events(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util import tensor_util

    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {
        tag: [(e.step, float(tensor_util.make_ndarray(e.tensor_proto))) for e in acc.Tensors(tag)]
        for tag in acc.Tags()["tensors"]
    }


def test_metrics_writer_writes_jsonl_and_events_that_read_back(tmp_path):
    with tf_train.MetricsWriter(tmp_path / "run") as w:
        w.scalars(100, {"loss": 2.25, "fake_sparsity": 0.0}, stage=1)
        w.scalars(200, {"loss": 1.75, "fake_sparsity": float("inf")}, stage=1)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert rows == [
        {"step": 100, "stage": 1, "loss": 2.25, "fake_sparsity": 0.0},
        {"step": 200, "stage": 1, "loss": 1.75, "fake_sparsity": None},
    ]
    events = _read_events(tmp_path / "run")
    assert events["loss"] == [(100, 2.25), (200, 1.75)]
    assert events["fake_sparsity"][0] == (100, 0.0) and np.isinf(events["fake_sparsity"][1][1])
    off = tf_train.MetricsWriter(tmp_path / "other", enabled=False)  # a non-chief worker
    off.scalars(1, {"loss": 1.0})
    off.close()
    assert not (tmp_path / "other").exists()


def test_save_trigger_by_steps_and_by_clock_without_distribution():
    now = [0.0]
    trigger = tf_train.SaveTrigger(None, every_steps=3, every_secs=10.0, clock=lambda: now[0])
    due = []
    for step in range(1, 10):
        now[0] = 4.0 * step  # 4 s per step: the clock is up after steps 3, 6, 9 counted from the last save
        if trigger.due(step):
            due.append(step)
            trigger.saved()
    assert due == [3, 6, 9]
    trigger = tf_train.SaveTrigger(None, every_secs=10.0, clock=lambda: now[0])
    now[0], due = 0.0, []
    trigger.saved()
    for step in range(1, 8):
        now[0] = 4.0 * step
        if trigger.due(step):
            due.append(step)
            trigger.saved()
    assert due == [3, 6]  # 12 s >= 10 at step 3; then 24 - 12 >= 10 at step 6
