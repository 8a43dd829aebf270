"""DCP's channel selection against independent computations: PocketFlow's score (squared gradient norm
of reconstruction + aux loss on one batch), the paper's score (sum over output channels of Frobenius
norms of the accumulated gradient), greedy addition without re-picks, the NaN error, accumulation."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.tf

tf = pytest.importorskip("tensorflow")

from dcp_tf import dcp  # noqa: E402
from dcp_tf.models import ResNet  # noqa: E402


def learner(tmp_path, variant: str, digits_train, **kw) -> dcp.DcpLearner:
    cfg = dcp.DcpConfig(variant=variant, nb_stages=1, batch_size=8, summ_step=0, **kw)
    return dcp.DcpLearner(cfg, ResNet(variant, "cifar10", 8, seed=1), digits_train, tmp_path, log=lambda s: None)


def batch(digits_train, n=8, start=0):
    x = (digits_train.images[start : start + n].astype(np.float32) - 128.0) / 64.0
    return tf.constant(x), tf.constant(digits_train.labels[start : start + n].astype(np.int32))


def perturb(model: ResNet) -> None:
    """Make the pruned copy differ from the reference so that the reconstruction term is not zero."""
    for c in model.convs:
        c.kernel.assign(c.kernel * 0.9 + 0.01)


def test_pocketflow_score_is_the_squared_gradient_norm_on_one_batch(tmp_path, digits_train):
    L = learner(tmp_path, "pocketflow", digits_train)
    perturb(L.pruned)
    stage = L.stages[0]  # L = 10 convs, P = 1: ceil(11 / 2) = 6, the aux head reads conv 5
    assert stage.tap == ("conv", 5) and {3, 4} <= set(stage.layers)
    x, y = batch(digits_train)

    def expected(i):
        kernel = L.pruned.convs[i].kernel
        with tf.GradientTape() as tape:
            _, full_outs, _ = L.full.forward(x, True, update=False)
            _, outs, _ = L.pruned.forward(x, True, update=False)
            rec = 0.5 * tf.reduce_sum(tf.square(full_outs[i] - outs[i]))  # tf.nn.l2_loss, whole batch
            logits = L.heads[0](outs[5], True, update=False)
            ce = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
            loss = rec + ce
        g = tape.gradient(loss, kernel).numpy()
        return (g**2).sum(axis=(0, 1, 3))

    # conv 3, then conv 4 through the stage's one traced step: each gets its own reconstruction term,
    # and scoring conv 4 leaves conv 3's score as it was
    L._score_step(stage, 3, 1)(x, y)
    first = L.scores["3"].numpy()
    np.testing.assert_allclose(first, expected(3), rtol=1e-4)
    assert np.argmax(first) == np.argmax(expected(3))
    L._score_step(stage, 4, 1)(x, y)
    np.testing.assert_allclose(L.scores["4"].numpy(), expected(4), rtol=1e-4)
    np.testing.assert_array_equal(L.scores["3"].numpy(), first)
    assert len([k for k in L._steps if k[0] == "score"]) == 1  # one trace for the stage


def test_paper_score_sums_frobenius_norms_of_the_accumulated_gradient(tmp_path, digits_train):
    L = learner(tmp_path, "paper", digits_train)
    perturb(L.pruned)
    stage = L.stages[0]
    i = stage.layers[0]  # conv2 of the first block
    batches = [batch(digits_train, 8, 0), batch(digits_train, 8, 8)]
    step = L._score_step(stage, i, 2)
    for x, y in batches:
        step(x, y)
    got = L.scores[str(i)].numpy()

    kernel = L.pruned.convs[i].kernel
    grads = []
    for x, y in batches:  # BN frozen (inference mode); MSE (mean) + CE of the aux head at the pivot
        with tf.GradientTape() as tape:
            _, full_outs, _ = L.full.forward(x, False, update=False)
            _, outs, blocks = L.pruned.forward(x, False, update=False)
            mse = tf.reduce_mean(tf.square(full_outs[i] - outs[i]))
            logits = L.heads[0](blocks[stage.tap[1]], False, update=False)
            ce = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
            loss = mse + ce
        grads.append(tape.gradient(loss, kernel).numpy())
    g = np.mean(grads, axis=0)
    want = np.sqrt((g**2).sum(axis=(0, 1))).sum(axis=1)  # sum_out ||G[:, :, j, out]||_F
    np.testing.assert_allclose(got, want, rtol=1e-4)


def test_zero_gradient_norms_never_repick_a_channel(tmp_path, digits_train, monkeypatch):
    """PocketFlow #143: all-zero norms made argmax re-pick channel 0 forever."""
    L = learner(tmp_path, "pocketflow", digits_train, prune_ratio=0.5, nb_iters_layer=0, save_every_picks=0)
    stage, i = L.stages[0], 2
    monkeypatch.setattr(L, "_score", lambda *a: np.zeros(L.pruned.convs[i].c_in, np.float32))
    from dcp_tf.data import Stream

    L._select_layer(stage, i, Stream(digits_train, 8, 0))
    assert L.progress.chosen == list(range(8))  # 16 - floor(0.5 * 16) distinct channels
    mask = L.pruned.convs[i].mask.numpy()
    assert mask.sum() == 8 and np.all(mask[:8] == 1)
    assert np.count_nonzero(L.pruned.convs[i].kernel.numpy()[:, :, 8:, :]) == 0


def test_nan_gradient_norms_stop_with_a_clear_error(tmp_path, digits_train, monkeypatch):
    L = learner(tmp_path, "pocketflow", digits_train, nb_iters_layer=0)
    monkeypatch.setattr(L, "_score", lambda *a: np.full(16, np.nan, np.float32))
    from dcp_tf.data import Stream

    with pytest.raises(dcp.SelectionError, match="non-finite gradient norms"):
        L._select_layer(L.stages[0], 2, Stream(digits_train, 8, 0))


def test_accumulated_layer_step_equals_one_big_batch(tmp_path, digits_train):
    """The paper's layer step (BN frozen): 2 accumulated micro-batches of 4 = one batch of 8."""
    results, before = [], None
    for accum in (1, 2):
        L = learner(tmp_path / f"a{accum}", "paper", digits_train, accum_steps=accum)
        perturb(L.pruned)
        stage = L.stages[0]
        i = stage.layers[0]
        step = L._layer_step(stage, i)
        before = L.pruned.convs[i].kernel.numpy()
        x, y = batch(digits_train, 8)
        for k in range(accum):
            lo, hi = k * 8 // accum, (k + 1) * 8 // accum
            step(x[lo:hi], y[lo:hi])
        results.append(L.pruned.convs[i].kernel.numpy())
    assert np.abs(results[0] - before).max() > 1e-4  # the step moved the kernel
    np.testing.assert_allclose(results[0], results[1], rtol=1e-5, atol=1e-7)
