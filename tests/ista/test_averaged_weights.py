"""The compact model of a stage, and the next stage, are built from the averaged (EMA) weights, as the
original restores `variables_to_restore()` before compressing (research/ista.md 2.7): checked against
the EMA rule by hand, d = min(0.999, (1 + t) / (10 + t)), after one update: 2/11 w0 + 9/11 w1."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.tf

tf = pytest.importorskip("tensorflow")

from ista_tf import chain  # noqa: E402
from ista_tf.models import build_model  # noqa: E402
from ista_tf.train import StageConfig, run_stage  # noqa: E402


def _compact(folder):
    model = build_model(chain.read_arch(folder, "cnn4"))
    chain.restore_compact(model, folder)
    return model


def test_compact_model_and_next_stage_start_from_the_averaged_weights(tmp_path, digits_train):
    """Stage 1 of a small cnn4 (its version 1 written here, so that its start w0 is known), then stage 2."""
    data = digits_train.subset(64)
    cfg = StageConfig(model="cnn4", l1_penalty=0.0, max_steps=1, batch_size=16, log_frequency=100)
    arch = {"model": "cnn4", "widths": [8, 12, 12, 16]}
    w0 = build_model(arch, seed=3)  # the stage's initial weights
    chain.write_compact(w0, chain.compact_dir(tmp_path / "run", 1), [])
    first = run_stage(cfg, tmp_path / "run", 1, data, log=lambda line: None)
    assert first["widths_after"] == first["widths_before"]  # no gamma is zero: nothing pruned
    w1 = build_model(arch, seed=4)  # overwritten by the step-1 checkpoint
    ckpt = tf.train.latest_checkpoint(tmp_path / "run_1" / "train")
    tf.train.Checkpoint(model=w1).restore(ckpt).expect_partial()
    compact = _compact(tmp_path / "run_2" / "compact")
    moved = 0.0
    for v, a, b in zip(compact.trainable_variables, w0.trainable_variables, w1.trainable_variables):
        np.testing.assert_allclose(v.numpy(), 2 / 11 * a.numpy() + 9 / 11 * b.numpy(), atol=1e-6, err_msg=v.name)
        moved = max(moved, float(np.abs(b.numpy() - a.numpy()).max()))
    assert moved > 1e-3  # raw and averaged weights differ by 2/11 of that: visible
    # The next stage starts from that compact model: after one step at a negligible learning rate its
    # own compact (averaged) weights are the same.
    cfg2 = StageConfig(model="cnn4", l1_penalty=0.0, max_steps=1, batch_size=16, learning_rate=1e-12)
    run_stage(cfg2, tmp_path / "run", 2, data, log=lambda line: None)
    again = _compact(tmp_path / "run_3" / "compact")
    for a, b in zip(compact.trainable_variables, again.trainable_variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-7, err_msg=a.name)
