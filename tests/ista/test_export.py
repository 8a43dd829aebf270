"""ista_tf.export: a compressed model of the chain written as SavedModel, TFLite and ONNX; each file,
loaded back in its own runtime by this test, gives the model's logits; an existing export is refused."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytestmark = pytest.mark.tf

tf = pytest.importorskip("tensorflow")

from ista_tf import chain, export  # noqa: E402
from ista_tf.models import build_model  # noqa: E402
from ista_tf.models.layers import BatchNorm  # noqa: E402


@pytest.fixture(scope="module")
def compact_version(tmp_path_factory):
    """<train_dir>_1/compact: a compressed cnn4 with moving statistics far from 0/1 (an export that
    used batch statistics, or none, would be off by far more than the tolerance)."""
    train_dir = tmp_path_factory.mktemp("chain") / "run"
    model = build_model({"model": "cnn4", "widths": [8, 12, 12, 16]}, seed=3)
    rng = np.random.default_rng(0)
    for layer in model.layers():
        if isinstance(layer, BatchNorm):
            layer.moving_mean.assign(rng.uniform(-0.3, 0.3, layer.channels).astype("f"))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, layer.channels).astype("f"))
    chain.write_compact(model, chain.compact_dir(train_dir, 1), [])
    return train_dir, model


def test_exports_load_in_their_runtimes_and_match_the_model(compact_version, tmp_path, capsys):
    train_dir, model = compact_version
    out = tmp_path / "export"
    argv = ["--checkpoint_version", "1", "--model", "cnn4", "--dataset", "digits", "--train_dir", str(train_dir)]
    assert export.main([*argv, "--out", str(out), "--check_images", "16"]) == 0
    summary = json.loads((out / "export.json").read_text())
    assert summary["widths"] == [8, 12, 12, 16] and set(summary["max_abs_diff"]) == set(export.FORMATS)
    assert max(summary["max_abs_diff"].values()) < 1e-4
    print(capsys.readouterr().out)

    # independently of the module's own check: each file in its runtime, on other images and a new batch size
    images = np.random.default_rng(5).normal(size=(9, 32, 32, 3)).astype("f")
    expected = model(tf.constant(images), training=False).numpy()
    assert np.abs(expected - model(tf.constant(images), training=True).numpy()).max() > 1e-2

    loaded = tf.saved_model.load(str(out / "saved_model"))
    np.testing.assert_allclose(loaded.serve(tf.constant(images)).numpy(), expected, atol=1e-4)

    from ai_edge_litert.interpreter import Interpreter

    lite = Interpreter(model_path=str(out / "model.tflite"))
    inp = lite.get_input_details()[0]
    lite.resize_tensor_input(inp["index"], images.shape)
    lite.allocate_tensors()
    lite.set_tensor(inp["index"], images)
    lite.invoke()
    np.testing.assert_allclose(lite.get_tensor(lite.get_output_details()[0]["index"]), expected, atol=1e-4)

    import onnxruntime as ort

    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: images})[0]
    np.testing.assert_allclose(got, expected, atol=1e-4)

    # nothing is overwritten: a second export into the same folder is refused, the files unchanged
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    assert export.main([*argv, "--out", str(out), "--formats", "onnx"]) == 2
    assert "already holds model.onnx" in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before


def test_bad_flags_are_refused_before_anything_is_written(compact_version, tmp_path, capsys):
    train_dir, _ = compact_version
    common = ["--model", "cnn4", "--dataset", "digits", "--train_dir", str(train_dir), "--out", str(tmp_path / "x")]
    assert export.main(["--checkpoint_version", "1", "--formats", "pb", *common]) == 2
    assert "--formats" in capsys.readouterr().err
    assert export.main(["--checkpoint_version", "1", "--tolerance", "nan", *common]) == 2
    assert "--tolerance" in capsys.readouterr().err
    assert export.main(["--checkpoint_version", "4", *common]) == 2
    assert "no compact model of version 4" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
