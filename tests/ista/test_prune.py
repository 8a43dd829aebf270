"""Removing zero-gamma channels: the paper's fold keeps the outputs (exactly without padding), the
released code's drop does not; exact-zero rule; the all-pruned policy."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.tf

tf = pytest.importorskip("tensorflow")

from ista_tf import prune  # noqa: E402
from ista_tf.models import CNN4, ResNet20  # noqa: E402

X = None


def _inputs():
    global X
    if X is None:
        X = tf.random.stateless_normal([64, 32, 32, 3], seed=(0, 1))
    return X


def _trained_looking(model, seed=0):
    """Random BN statistics and positive-leaning betas, so that pruned channels carry a real constant."""
    rng = np.random.default_rng(seed)
    for layer in model.layers():
        if hasattr(layer, "moving_mean"):
            c = layer.channels
            layer.moving_mean.assign(rng.normal(0, 0.5, c).astype("f"))
            layer.moving_variance.assign(rng.uniform(0.5, 2, c).astype("f"))
            if layer.beta is not None:
                layer.beta.assign(rng.normal(0.5, 0.5, c).astype("f"))
            if layer.gamma is not None:
                layer.gamma.assign(rng.normal(1, 0.3, c).astype("f"))
    return model


def _zero_gammas(units, pick):
    for unit in units:
        g = unit.bn.gamma.numpy()
        g[pick(g.size)] = 0.0
        unit.bn.gamma.assign(g)


def _raw(model):
    return {u.label: u.bn.gamma.numpy() for u in model.units()}


def _compress_error(model, fold):
    ref = model(_inputs(), training=False).numpy()
    compact, result = prune.compress(model, _raw(model), fold)
    return np.abs(compact(_inputs(), training=False).numpy() - ref), ref, result


def test_paper_fold_is_exact_without_padding():
    # cnn4's conv3 -> max-pool -> fc1 (4x4 VALID) and fc1 -> logits (1x1): the next convs have no padding
    model = _trained_looking(CNN4((8, 16, 16, 32), seed=2))
    _zero_gammas(model.units()[2:], lambda n: slice(0, None, 3))
    err, ref, result = _compress_error(model, "paper")
    assert result.widths_after == [8, 16, 10, 21]
    assert err.max() < 1e-5
    dropped, _, _ = _compress_error(model, "released-code")
    assert dropped.max() > 0.1, "without the fold the constant channels' contribution is lost"


def test_paper_fold_is_approximate_with_padding():
    # resnet20: c0 -> ReLU -> c1 (3x3 SAME): border positions saw fewer copies of the constant
    model = _trained_looking(ResNet20(seed=2))
    rng = np.random.default_rng(1)
    _zero_gammas(model.units(), lambda n: rng.random(n) < 0.3)
    err, ref, result = _compress_error(model, "paper")
    dropped, _, _ = _compress_error(model, "released-code")
    assert result.removed > 40
    # measured: mean |error| 0.15 with the fold vs 1.04 without, logits std 5.7
    assert err.mean() < 0.2 * dropped.mean()
    assert err.mean() < 0.05 * ref.std()


def test_only_exact_zeros_are_pruned_and_an_all_zero_layer_keeps_one_channel():
    model = ResNet20(seed=0)
    units = model.units()
    g = units[0].bn.gamma.numpy()
    g[:4] = [0.0, -0.0, 1e-30, -1e-30]
    units[0].bn.gamma.assign(g)
    units[4].bn.gamma.assign(np.zeros(32, np.float32))
    raw = _raw(model)
    averaged = np.linspace(-1e-3, 1e-2, 32).astype("f")  # what the averaged gammas of g1b1c0 look like
    units[4].bn.gamma.assign(averaged)
    compact, result = prune.compress(model, raw)
    assert result.kept["g0b0c0"] == list(range(2, 16))  # 1e-30 is not zero: no magnitude threshold
    assert result.forced == ["g1b1c0"] and result.kept["g1b1c0"] == [int(np.argmax(np.abs(averaged)))]
    assert compact.widths[4] == 1
    assert compact(tf.zeros([1, 32, 32, 3])).shape == (1, 10)


def test_compress_copies_the_kept_values():
    model = _trained_looking(ResNet20(seed=4))
    _zero_gammas(model.units()[6:7], lambda n: [0, 5, 9])
    compact, _ = prune.compress(model, _raw(model))
    keep = [i for i in range(64) if i not in (0, 5, 9)]
    src, dst = model.blocks[6], compact.blocks[6]
    np.testing.assert_array_equal(dst.c0.kernel.numpy(), src.c0.kernel.numpy()[..., keep])
    np.testing.assert_array_equal(dst.c1.kernel.numpy(), src.c1.kernel.numpy()[:, :, keep, :])
    np.testing.assert_array_equal(dst.c0_bn.moving_variance.numpy(), src.c0_bn.moving_variance.numpy()[keep])
    np.testing.assert_array_equal(dst.proj.kernel.numpy(), src.proj.kernel.numpy())
    # released-code fold: the next BN's moving mean is untouched
    np.testing.assert_array_equal(dst.c1_bn.moving_mean.numpy(), src.c1_bn.moving_mean.numpy())
