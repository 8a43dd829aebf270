"""The DSP regulariser, its derivatives and layer scale against hand-computed values and autograd."""

import pytest
import torch

from dsp_torch.group_lasso import (
    exact_second_order,
    layer_scale,
    reg_terms,
    regularizer_value,
    released_second_order,
)

pytestmark = pytest.mark.torch

# One group holding two filters, one input channel, 1x1 kernels: W = [3, 4], P = [1, 1].
# lasso = 5, s = (1 + 1)^2 = 4, R = 20; dR/dW = s W / lasso = [2.4, 3.2];
# dR/dP_n = s W_n^2 / lasso + lasso * ds/dP_n = 4 W_n^2 / 5 + 5 * 2 = [17.2, 22.8].
W = torch.tensor([3.0, 4.0]).view(2, 1, 1, 1)
P = torch.ones(1, 2)
DW = torch.ones(2, 1, 1, 1)


def test_hand_values():
    t = reg_terms(W, P)
    assert regularizer_value(W, P).item() == pytest.approx(20.0)
    torch.testing.assert_close(t.dR_dw().flatten(), torch.tensor([2.4, 3.2]))
    torch.testing.assert_close(t.dR_dp().flatten(), torch.tensor([17.2, 22.8]), atol=1e-5, rtol=1e-6)


def test_released_second_order_hand_values():
    # ds/dP * <dlasso/dW_n, dW_n> + s * (2 <W_n/L, dW_n> - dlasso/dP_n <P_n^2 W_n / L^2, dW_n>)
    #   n=1: 2 * 0.6 + 4 * (1.2 - 1.8 * 0.12) = 5.136;  n=2: 2 * 0.8 + 4 * (1.6 - 3.2 * 0.16) = 5.952
    got = released_second_order(reg_terms(W, P), DW).flatten()
    torch.testing.assert_close(got, torch.tensor([5.136, 5.952]), atol=1e-5, rtol=1e-6)


def test_exact_second_order_hand_values():
    # d/dP <s dL/dW, dW> with A = sum P^2 W dW = 7, L = 5, s = 4:
    #   ds/dP1 A / L + s dA/dP1 / L - s A dL/dP1 / L^2 = 2.8 + 4.8 - 2.016 = 5.584;  n=2: 5.616
    got = exact_second_order(W, P, DW).flatten()
    torch.testing.assert_close(got, torch.tensor([5.584, 5.616]), atol=1e-5, rtol=1e-6)


def test_derivatives_match_autograd_on_random_layers():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(8, 5, 3, 3, generator=g)
    p = torch.softmax(torch.randn(3, 8, generator=g), dim=0)
    t = reg_terms(w, p)
    wv, pv = w.clone().requires_grad_(True), p.clone().requires_grad_(True)
    gw, gp = torch.autograd.grad(regularizer_value(wv, pv), (wv, pv))
    torch.testing.assert_close(t.dR_dw().view_as(w), gw, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(t.dR_dp(), gp, atol=1e-4, rtol=1e-4)


def test_exact_second_order_matches_finite_differences():
    g = torch.Generator().manual_seed(1)
    w = torch.randn(6, 4, 3, 3, generator=g, dtype=torch.float64)
    p = torch.softmax(torch.randn(2, 6, generator=g, dtype=torch.float64), dim=0)
    dw = torch.randn_like(w)

    def inner(pp):
        wv = w.clone().requires_grad_(True)
        (gw,) = torch.autograd.grad(regularizer_value(wv, pp), wv)
        return (gw * dw).sum()

    exact = exact_second_order(w, p, dw)
    eps = 1e-6
    e = torch.zeros_like(p)
    e[1, 3] = eps
    numeric = (inner(p + e) - inner(p - e)) / (2 * eps)
    assert exact[1, 3].item() == pytest.approx(numeric.item(), rel=1e-5)


def test_layer_scale_forms():
    # stage_1 conv of a CIFAR ResNet: input 16x32x32 -> sqrt(1) * 3 * (4/16)^1.5 = 0.375
    assert layer_scale(16 * 32 * 32, 3, 4, 16, "activation") == pytest.approx(0.375)
    # stage_3 conv: input 64x8x8 -> sqrt(0.25) * 3 * (4/64)^1.5 = 0.0234375
    assert layer_scale(64 * 8 * 8, 3, 4, 64, "activation") == pytest.approx(0.0234375)
    assert layer_scale(64 * 8 * 8, 3, 4, 64, "kernel") == pytest.approx(0.046875)
    with pytest.raises(ValueError):
        layer_scale(1, 3, 4, 64, "nope")
