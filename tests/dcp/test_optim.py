"""Masked optimisers: one step against hand-computed updates, and pruned weights exactly zero through
Adam, momentum, Nesterov with weight decay and clipping."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.tf

tf = pytest.importorskip("tensorflow")

from dcp_tf.optim import Adam, Momentum  # noqa: E402


def kernel_and_mask():
    w = tf.Variable(np.random.default_rng(0).normal(size=(3, 3, 4, 2)).astype(np.float32))
    mask = tf.Variable(np.array([1, 0, 1, 0], np.float32))
    w.assign(w * tf.reshape(mask, [1, 1, -1, 1]))
    return w, mask


def test_adam_step_equals_tf1_adam_by_hand():
    w = tf.Variable([1.0, -2.0])
    opt = Adam([w], [None], lr=0.1)
    g = np.array([0.5, -1.5], np.float32)
    opt.apply([tf.constant(g)])
    m, v = 0.1 * g, 0.001 * g**2
    lr_t = 0.1 * np.sqrt(1 - 0.999) / (1 - 0.9)
    np.testing.assert_allclose(w.numpy(), np.array([1.0, -2.0]) - lr_t * m / (np.sqrt(v) + 1e-8), rtol=1e-6)


def test_nesterov_with_weight_decay_equals_torch_sgd_by_hand():
    w = tf.Variable([1.0, 2.0])
    opt = Momentum([w], [None], lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)
    for _ in range(2):
        opt.apply([tf.constant([0.3, -0.2])])
    ref, buf = np.array([1.0, 2.0]), np.zeros(2)
    for _ in range(2):
        g = np.array([0.3, -0.2]) + 0.01 * ref
        buf = 0.9 * buf + g
        ref = ref - 0.1 * (g + 0.9 * buf)
    np.testing.assert_allclose(w.numpy(), ref, rtol=1e-6)


@pytest.mark.parametrize(
    "make",
    [
        lambda w, m: Adam([w], [m], lr=0.05),
        lambda w, m: Momentum([w], [m], lr=0.1, momentum=0.9),
        lambda w, m: Momentum([w], [m], lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-2, clip_norm=0.5),
    ],
    ids=["adam", "momentum", "nesterov-wd-clip"],
)
def test_pruned_slices_stay_exactly_zero(make):
    w, mask = kernel_and_mask()
    opt = make(w, mask)
    rng = np.random.default_rng(1)
    before = w.numpy()
    for _ in range(20):
        g = rng.normal(size=w.shape).astype(np.float32) + 2e-4 * w.numpy()  # gradients everywhere, decay too
        opt.apply([tf.constant(g)])
    after = w.numpy()
    assert np.count_nonzero(after[:, :, [1, 3], :]) == 0
    assert np.all(after[:, :, [0, 2], :] != before[:, :, [0, 2], :])  # kept slices did move
