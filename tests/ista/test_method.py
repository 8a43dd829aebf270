"""The ISTA method on hand values: the proximal step, lambda_l, the logged quantities, the rescaling."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.tf

tf = pytest.importorskip("tensorflow")

from ista_tf import ista  # noqa: E402
from ista_tf.models import CNN4, ResNet20, build_model, full_arch  # noqa: E402


def test_proximal_step_matches_closed_form_on_hand_values():
    gamma = tf.constant([-2.0, -0.1, -0.05, 0.0, 0.05, 0.1, 0.3, 1.5])
    out = ista.proximal_step(gamma, 0.1).numpy()
    # sign(g) max(|g| - 0.1, 0), worked out by hand
    np.testing.assert_allclose(out, [-1.9, 0.0, 0.0, 0.0, 0.0, 0.0, 0.2, 1.4], atol=1e-7)
    assert np.all(out[1:6] == 0.0), "inside the threshold the prox must give exactly zero"
    # the released code's multiplicative form gamma * max(1 - thr / max(|gamma|, 1e-16), 0) is the same map
    g = gamma.numpy()
    released = g * np.maximum(1 - 0.1 / np.maximum(np.abs(g), 1e-16), 0)
    np.testing.assert_allclose(out, released, atol=1e-7)


def test_ista_sgd_is_plain_sgd_then_prox_with_lr_rho_lambda():
    model = ResNet20(seed=0)
    variables = model.trainable_variables
    unit = model.units()[3]  # g1b0c0, lambda = 0.671875
    unit.bn.gamma.assign(np.linspace(-0.5, 0.5, 32, dtype=np.float32))
    grads = [tf.ones_like(v) * 0.25 for v in variables]
    before = {v.ref(): v.numpy() for v in variables}
    lr, rho = 0.1, 0.8
    ista.IstaSGD(variables, model, l1_penalty=rho)(grads, tf.constant(lr))
    expected_gamma = before[unit.bn.gamma.ref()] - lr * 0.25
    thr = lr * rho * 0.671875  # released code: thr = lambda_l * lr_t * l1_penalty
    expected_gamma = np.sign(expected_gamma) * np.maximum(np.abs(expected_gamma) - thr, 0)
    np.testing.assert_allclose(unit.bn.gamma.numpy(), expected_gamma, atol=1e-6)
    assert np.count_nonzero(unit.bn.gamma.numpy() == 0) > 0
    # everything else (kernels, betas, the logits gamma with lambda = 0) got the plain SGD step only
    np.testing.assert_allclose(model.logits_bn.gamma.numpy(), before[model.logits_bn.gamma.ref()] - lr * 0.25)
    np.testing.assert_allclose(unit.conv.kernel.numpy(), before[unit.conv.kernel.ref()] - lr * 0.25, atol=1e-7)


def test_ista_sgd_without_penalty_is_plain_sgd_and_rejects_negative_rho():
    model = ResNet20(seed=0)
    gamma = model.units()[0].bn.gamma
    gamma.assign(tf.fill(gamma.shape, 1e-3))
    ista.IstaSGD(model.trainable_variables, model, 0.0)([tf.zeros_like(v) for v in model.trainable_variables], 0.1)
    assert np.all(gamma.numpy() == np.float32(1e-3))
    with pytest.raises(ValueError, match="l1_penalty"):
        ista.IstaSGD(model.trainable_variables, model, -0.001)


def test_penalty_weights_resnet20_match_the_released_code():
    model = build_model(full_arch("resnet20"))
    lambdas = ista.penalty_weights(model)
    expected = {
        **{f"g0b{b}c0": 1.28125 for b in range(3)},
        "g1b0c0": 0.671875,
        "g1b1c0": 0.8125,
        "g1b2c0": 0.8125,
        "g2b0c0": 0.90625,
        "g2b1c0": 1.1875,
        "g2b2c0": 1.1875,
    }
    assert lambdas == pytest.approx(expected, abs=1e-12)
    assert ista.weight_edge_count(model) == pytest.approx(345.0, abs=1e-9)
    # only c0 layers are penalised; the logits BN (lambda 0) is not among them
    assert "logits" not in lambdas and len(lambdas) == 9


def test_penalty_weights_cnn4_match_the_released_code_including_its_quirks():
    model = build_model(full_arch("cnn4"))
    lambdas = ista.penalty_weights(model)
    assert lambdas == pytest.approx({"conv1": 5.7607421875, "conv2": 4.28125, "conv3": 5.125, "fc1": 3.0107421875})
    assert ista.weight_edge_count(model) == pytest.approx(3515.16, abs=0.01)
    # quirk: conv3's add_to_cost uses a 3x3 area for fc1 (4x4 kernel): 384 * 9, not 384 * 16
    assert lambdas["conv3"] == pytest.approx((64 + 9 * 192 + 384 * 9) / 1024)
    # quirk in compressed stages: own input width is the compact one, the next-layer term stays at full widths
    compact = CNN4(widths=(48, 100, 150, 300))
    assert ista.penalty_weights(compact)["conv2"] == pytest.approx((16 * 16 + 25 * 48 + 192 * 9) / 1024)


def test_group_lasso_and_fake_sparsity_on_hand_values():
    gammas = {"a": np.array([0.0, 0.5, -1.0, 0.0]), "b": np.array([2.0, 0.0])}
    lambdas = {"a": 1.5, "b": 0.5}
    # group lasso = sum_l lambda_l ||gamma_l||_1 (no rho) = 1.5 * 1.5 + 0.5 * 2.0
    assert ista.group_lasso(gammas, lambdas) == pytest.approx(3.25)
    # fake sparsity = sum lambda * #zeros / sum lambda * C = (1.5 * 2 + 0.5 * 1) / (1.5 * 4 + 0.5 * 2)
    assert ista.fake_sparsity(gammas, lambdas) == pytest.approx(3.5 / 7.0)
    assert ista.fake_sparsity({"a": np.ones(3)}, {"a": 1.0}) == 0.0


def test_learning_rate_is_the_original_staircase():
    lr = lambda step: float(ista.learning_rate(0.1, tf.constant(step), 125))  # noqa: E731
    assert lr(0) == pytest.approx(0.1) and lr(139_999) == pytest.approx(0.1)
    assert lr(140_000) == pytest.approx(0.01)


@pytest.mark.parametrize("name", ["resnet20", "cnn4"])
def test_gamma_w_rescaling_keeps_the_function_and_round_trips(name):
    model = build_model({"model": name, "widths": [8] * (9 if name == "resnet20" else 4)}, seed=3)
    for unit in model.units():  # non-trivial betas so that ReLU(alpha z) = alpha ReLU(z) matters
        unit.bn.beta.assign(tf.random.stateless_normal(unit.bn.beta.shape, seed=(1, 2)))
    x = tf.random.stateless_normal([4, 32, 32, 3], seed=(0, 1))
    before = model(x, training=False).numpy()
    gamma0 = model.units()[0].bn.gamma.numpy().copy()
    ista.rescale_gamma_w(model, 0.01)
    np.testing.assert_allclose(model.units()[0].bn.gamma.numpy(), gamma0 * 0.01, rtol=1e-6)
    np.testing.assert_allclose(model(x, training=False).numpy(), before, rtol=1e-4, atol=1e-4)
    ista.rescale_gamma_w(model, 100.0)
    np.testing.assert_allclose(model.units()[0].bn.gamma.numpy(), gamma0, rtol=1e-5)
