"""ekg_tf2.models.tcl against hand-computed cases: gate widths, kernel renormalisation, the importance
probe (Eq. 9), batch-norm statistics, initialisers."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.tf

tf = pytest.importorskip("tensorflow")

from ekg_tf2.models import ResNet  # noqa: E402
from ekg_tf2.models.tcl import FC, BatchNorm, Conv2d, DepthwiseConv2d, ScoringGate, renormalised  # noqa: E402


@pytest.mark.parametrize(
    "channels, rate, kept",
    [(16, 1.0, 16), (16, 0.8, 13), (16, 1 - 3 / 16, 13), (64, 0.98, 63), (10, 0.01, 1), (10, -0.5, 1)],
)
def test_gate_keeps_ceil_c_times_rate_and_at_least_one(channels, rate, kept):
    gate = ScoringGate("g", channels)
    gate.set_rate(rate)
    assert gate.live() == kept
    assert int(gate.mask().numpy().sum()) == kept


def test_gate_width_is_float_safe():
    # 1 - 0.2 * 4 in floats is 0.19999999999999996 or 0.2000000001: C * rate must keep exactly 2 of 10
    rate = 1.0
    for _ in range(4):
        rate -= 0.2
    assert ScoringGate.kept_for(10, rate) == 2
    assert ScoringGate.kept_for(10, np.float32(0.2)) == 2


def test_gate_masks_the_channels_of_largest_order():
    gate = ScoringGate("g", 4)
    gate.set_order(np.array([2, 0, 3, 1]))
    gate.set_rate(0.5)
    np.testing.assert_array_equal(gate.mask().numpy(), [0, 1, 0, 1])
    np.testing.assert_array_equal(gate.kept_indices(), [1, 3])
    x = tf.ones([1, 2, 2, 4])
    np.testing.assert_array_equal(gate(x).numpy()[0, 0, 0], [0, 1, 0, 1])


def test_masked_kernel_keeps_the_whole_tensor_frobenius_norm():
    k = np.arange(1, 2 * 2 * 3 * 4 + 1, dtype=np.float32).reshape(2, 2, 3, 4)
    m_in, m_out = np.array([1, 0, 1], "f"), np.array([0, 1, 1, 0], "f")
    mask = m_in[None, None, :, None] * m_out[None, None, None, :]
    got = renormalised(tf.constant(k), tf.constant(mask)).numpy()
    masked = k * mask
    expected = masked * np.sqrt((k**2).sum()) / np.sqrt((masked**2).sum())  # one norm, not per filter
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert np.sqrt((got**2).sum()) == pytest.approx(np.sqrt((k**2).sum()), rel=1e-6)


def test_conv_uses_its_gates_and_reports_live_channels():
    conv = Conv2d("c", 3, 4, 3)
    conv.in_gate, conv.out_gate = ScoringGate("a", 3), ScoringGate("b", 4)
    conv.out_gate.set_rate(0.5)
    y = conv(tf.random.stateless_normal([1, 8, 8, 3], seed=(0, 1)))
    kept = conv.out_gate.kept_indices()
    dead = np.setdiff1d(np.arange(4), kept)
    assert np.all(y.numpy()[..., dead] == 0) and np.all(np.abs(y.numpy()[..., kept]).sum(axis=(0, 1, 2)) > 0)
    spec = conv.spec()
    assert (spec.c_in, spec.c_out, spec.out_hw) == (3, 2, (8, 8))
    assert spec.macs == 8 * 8 * 3 * 3 * 3 * 2
    assert conv.spec({"b": 3}).c_out == 3  # a candidate is counted without applying it


def test_depthwise_and_fc_specs():
    dw = DepthwiseConv2d("dw", 6, 3, stride=2)
    dw(tf.zeros([1, 8, 8, 6]))
    assert dw.spec().macs == 4 * 4 * 3 * 3 * 6
    fc = FC("fc", 6, 10)
    assert fc.spec().macs == 60 and fc.spec().d_in == 6
    std = float(np.std(FC("fc2", 200, 100).kernel.numpy()))
    assert std == pytest.approx(0.01, rel=0.05)
    conv = Conv2d("c2", 64, 64, 3)
    assert float(np.std(conv.kernel.numpy())) == pytest.approx(np.sqrt(2 / (9 * 64)), rel=0.05)  # fan_out


def test_importance_probe_is_the_per_channel_sum_of_grad_times_activation():
    # R = sum_{b,h,w,c} w_c * y_out  =>  dR/dp_c = sum_{b,h,w} w_c * y_masked
    gate = ScoringGate("g", 3)
    gate.set_order(np.array([0, 2, 1]))
    gate.set_rate(0.5)  # keeps channels 0 and 2
    y = tf.random.stateless_normal([2, 3, 3, 3], seed=(4, 2))
    w = tf.constant([0.5, -2.0, 3.0])
    probe = tf.ones([3])
    with tf.GradientTape() as tape:
        tape.watch(probe)
        r = tf.reduce_sum(gate(y, probe) * w)
    got = tape.gradient(r, probe).numpy()
    yn = y.numpy()
    expected = np.array([0.5 * yn[..., 0].sum(), 0.0, 3.0 * yn[..., 2].sum()])
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_batch_norm_moving_statistics_momentum_and_the_gated_freeze():
    bn = BatchNorm("bn", 2)
    x = tf.constant(np.random.RandomState(0).normal(2.0, 3.0, [4, 3, 3, 2]).astype("f"))
    y = bn(x, training=True).numpy()
    xn = x.numpy()
    mean, var = xn.mean((0, 1, 2)), xn.var((0, 1, 2))
    np.testing.assert_allclose(y, (xn - mean) / np.sqrt(var + 1e-5), atol=1e-5)
    np.testing.assert_allclose(bn.moving_mean.numpy().ravel(), 0.1 * mean, rtol=1e-5)
    np.testing.assert_allclose(bn.moving_variance.numpy().ravel(), 0.9 + 0.1 * var, rtol=1e-5)
    before = bn.moving_mean.numpy().copy()
    bn(x, training=True, update=False)
    np.testing.assert_array_equal(bn.moving_mean.numpy(), before)
    bn.gate = ScoringGate("g", 2)  # a gated BN never updates its moving statistics
    bn(x, training=True)
    np.testing.assert_array_equal(bn.moving_mean.numpy(), before)
    assert bn.gamma.shape == (1, 1, 1, 2) and bn.moving_mean.shape == (1, 1, 1, 2)


def test_folded_network_computes_what_the_network_does_with_moving_statistics():
    from ekg_tf2.models.folded import FoldedResNet, bn_of

    assert [bn_of(c) for c in ("conv", "BasicBlock1.0/conv3", "Bottleneck0.0/conv0")] == [
        "bn",
        "BasicBlock1.0/bn3",
        "Bottleneck0.0/bn0",
    ]
    model = ResNet("ResNet-8", 10, widths={"conv": 5, "BasicBlock0.0/conv1": 3, "BasicBlock1.0/conv3": 7}, seed=2)
    rng = np.random.RandomState(0)
    for layer in model.layers.values():  # moving statistics and affine parameters far from 0 / 1
        if isinstance(layer, BatchNorm):
            for v, lo, hi in ((layer.gamma, 0.5, 2), (layer.beta, -1, 1), (layer.moving_mean, -1, 1)):
                v.assign(rng.uniform(lo, hi, v.shape).astype(np.float32))
            layer.moving_variance.assign(rng.uniform(0.2, 3, layer.moving_variance.shape).astype(np.float32))
    x = tf.constant(rng.normal(size=[4, 32, 32, 3]).astype(np.float32))
    want = model(x, training=False).numpy()
    np.testing.assert_allclose(FoldedResNet(model)(x).numpy(), want, rtol=1e-4, atol=1e-4)
    model.attach_gates()
    with pytest.raises(ValueError, match="slim it first"):
        FoldedResNet(model)
