"""GroupWrapper's unrolled step (research notes 1.2-1.4) against an independent computation in the test.

The expected gradient of the group logits is rebuilt here from the notes with autograd only:

    W0  = W_t - c s_l dR/dW(W_t, P)                          soft penalty step, c = lambda lr (t+1)/T
    W'  = W0 - lr (mu m + dL/dW(W0) + wd W0)                   the trial SGD step (real momentum and lr)
    W'' = W' - c s_l dR/dW(W', P)                             soft penalty step at W'
    g_P = dR/dP(W', P) + d/dP <dR/dW(W0, P), W'' - W0>       (exact mixed second-order term)
    g_z = P (g_P - sum_g P g_P) / temp                        through P = softmax(z / temp + Gumbel noise)

R is written here again (not imported), and the Gumbel-softmax form is checked by its argmax law.
"""

import copy

import pytest
import torch
from torch import nn

from dsp_torch.dsp_module import GroupWrapper, PruneWrapper, prunable_convs, sample_gumbel_softmax
from dsp_torch.group_lasso import reg_terms, released_second_order
from dsp_torch.models import cifar_resnet

pytestmark = pytest.mark.torch

LR, MOMENTUM, WD, LAMBDA, TOTAL, TEMP = 0.05, 0.9, 1e-3, 0.5, 10, 0.5


def _r(w: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """R(W, P) = sum_g (sum_n P_gn^0.5)^2 sum_c ||P_g . W[:, c]||_2 (notes 1.3), with autograd."""
    n, c = w.shape[:2]
    group_channels = p[:, :, None, None] * w.reshape(n, c, -1)[None]  # (G, N, C, K)
    lasso = group_channels.pow(2).sum(dim=(1, 3)).sqrt()  # (G, C)
    return (p.sqrt().sum(1).pow(2) * lasso.sum(1)).sum()


def _grads_of_r(w, p):
    w, p = w.detach().clone().requires_grad_(True), p.detach().clone().requires_grad_(True)
    return torch.autograd.grad(_r(w, p), (w, p))


def _exact_mixed(w0, p, delta):
    w, p = w0.detach().clone().requires_grad_(True), p.detach().clone().requires_grad_(True)
    (gw,) = torch.autograd.grad(_r(w, p), w, create_graph=True)
    return torch.autograd.grad((gw * delta).sum(), p)[0]


def _small_net() -> nn.Module:
    """Stem + three prunable convs with BN (batch statistics in the trial step), then a classifier."""
    layers = [nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU()]
    for c_in, c_out in ((8, 12), (12, 12), (12, 16)):
        layers += [nn.Conv2d(c_in, c_out, 3, padding=1, stride=2 if c_in == 12 else 1, bias=False)]
        layers += [nn.BatchNorm2d(c_out), nn.ReLU()]
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))


@pytest.fixture
def float64():
    """The whole step in float64: the independent computation then agrees to ~1e-7 (the code's
    epsilons), and a change of the trial step (its learning rate, its momentum) that moves the
    gradient by 1e-4 is visible."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def _setup(second_order, seed=0):
    torch.manual_seed(seed)
    model = _small_net()
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WD)
    gw = GroupWrapper(
        model,
        opt,
        nn.CrossEntropyLoss(),
        LAMBDA,
        TOTAL,
        4,
        TEMP,
        second_order=second_order,
        generator=torch.Generator().manual_seed(1),
        verbose=False,
    )
    with torch.no_grad():  # committed, distinct memberships
        g = torch.Generator().manual_seed(2)
        for layer in gw.layers:
            layer.group.copy_(0.5 * torch.randn(layer.group.shape, generator=g))
    return model, opt, gw


def _batch(seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(16, 3, 16, 16, generator=g), torch.randint(0, 10, (16,), generator=g)


def _task_step(model, opt, gw, x, y):
    gw.initialize()
    opt.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()


def _expected_logit_grads(model, opt, gw, x, y, mixed):
    """Independent g_z for every prunable conv, from the state right before gw.after_step(x, y)."""
    lr = opt.param_groups[0]["lr"]
    coef = LAMBDA * lr * (gw.steps + 1) / TOTAL
    probs = [p.detach() for p in gw._prob]
    trial = copy.deepcopy(model)
    t_layers = [m for _, m in prunable_convs(trial)]
    w_t = [l.weight.detach().clone() for l in t_layers]
    w0 = [w - coef * s * _grads_of_r(w, p)[0] for w, s, p in zip(w_t, gw.scales, probs)]
    with torch.no_grad():
        for layer, w in zip(t_layers, w0):
            layer.weight.copy_(w)
    trial.zero_grad()
    nn.functional.cross_entropy(trial(x), y).backward()
    momentum = [opt.state[l.weight]["momentum_buffer"] for _, l in prunable_convs(model)]
    w1 = [w - lr * (MOMENTUM * m + l.weight.grad + WD * w) for w, m, l in zip(w0, momentum, t_layers)]
    out = []
    for w_0, w_1, p, s in zip(w0, w1, probs, gw.scales):
        dw1, dp1 = _grads_of_r(w_1, p)
        w2 = w_1 - coef * s * dw1
        g_p = dp1 + mixed(w_0, p, w2 - w_0)
        out.append(p * (g_p - (p * g_p).sum(0, keepdim=True)) / TEMP)
    return out


def _captured_logit_grads(gw, x, y):
    captured = []
    step = gw.group_optimizer.step

    def record(*a, **k):
        captured.extend(l.group.grad.detach().clone() for l in gw.layers)
        return step(*a, **k)

    gw.group_optimizer.step = record
    gw.after_step(x, y)
    gw.group_optimizer.step = step
    return captured


def _released_at_wt(w_t_by_layer):
    """The released variant contracts pieces taken at W_t (before the soft step); see the next test."""

    def mixed(w0, p, delta):
        return released_second_order(reg_terms(w_t_by_layer.pop(0), p), delta)

    return mixed


@pytest.mark.parametrize("second_order", ["exact", "released"])
def test_logit_gradient_equals_the_unrolled_step(second_order, float64):
    """Two steps (momentum exists), then the learning rate changes as a schedule would: the third
    step's logit gradient must use the real optimizer's momentum and current lr in the trial step,
    penalty steps at W_t and W', the mixed second-order term and the 1 / temp of the softmax."""
    model, opt, gw = _setup(second_order)
    for seed in (0, 1):
        x, y = _batch(seed)
        _task_step(model, opt, gw, x, y)
        gw.after_step(x, y)
    for group in opt.param_groups:
        group["lr"] = 0.03
    x, y = _batch(2)
    _task_step(model, opt, gw, x, y)
    w_t = [l.weight.detach().clone() for l in gw.layers]
    mixed = {
        "exact": _exact_mixed,
        "released": _released_at_wt(list(w_t)),
    }[second_order]
    expected = _expected_logit_grads(model, opt, gw, x, y, mixed)
    without_mixed = _expected_logit_grads(model, opt, gw, x, y, lambda w0, p, d: torch.zeros_like(p))
    got = _captured_logit_grads(gw, x, y)
    worst = max(float((a - b).abs().max() / b.abs().max()) for a, b in zip(got, expected))
    assert worst < 1e-6, f"relative difference {worst}"  # the released code's 1e-8 epsilons: ~1e-7
    # the mixed term is a large share of the signal: leaving it out is visible above the tolerance
    share = max(float((a - b).abs().max() / b.abs().max()) for a, b in zip(without_mixed, expected))
    assert share > 0.05, share


def test_released_second_order_is_the_per_filter_mixed_derivative_for_one_channel():
    """With one input channel the released per-filter form is d/dP_gn <dR/dW[n], dW[n]> (filter n's
    own slice of the contraction): the diagonal of the exact mixed Jacobian."""
    g = torch.Generator().manual_seed(0)
    n, groups = 5, 3
    w = torch.randn(n, 1, 3, 3, generator=g, dtype=torch.float64)
    p = torch.softmax(torch.randn(groups, n, generator=g, dtype=torch.float64), 0)
    delta = 0.1 * torch.randn(n, 1, 3, 3, generator=g, dtype=torch.float64)

    def per_filter(prob):
        wv = w.clone().requires_grad_(True)
        (gw,) = torch.autograd.grad(_r(wv, prob), wv, create_graph=True)
        return (gw * delta).sum(dim=(1, 2, 3))  # (N,)

    jac = torch.autograd.functional.jacobian(per_filter, p)  # (N, G, N)
    diagonal = torch.stack([jac[i, :, i] for i in range(n)], dim=1)
    got = released_second_order(reg_terms(w, p), delta)
    torch.testing.assert_close(got, diagonal, rtol=1e-6, atol=1e-9)


def test_gumbel_softmax_divides_the_logits_not_the_noise():
    """P = softmax(z / temp + Gumbel) (notes 1.2): by the Gumbel-max law the argmax is group g with
    probability softmax(z / temp)_g. For z = (0, 1) at temp 0.5 that is e^2 / (1 + e^2) = 0.8808;
    softmax((z + Gumbel) / temp) or no temperature would give e / (1 + e) = 0.7311."""
    logits = torch.zeros(4, 20_000)
    logits[1] = 1.0
    logits[2:] = -1e4  # groups 2, 3 never win
    prob = sample_gumbel_softmax(logits, TEMP, torch.Generator().manual_seed(0))
    torch.testing.assert_close(prob.sum(0), torch.ones(20_000))
    freq = float((prob.argmax(0) == 1).float().mean())  # standard error 0.0023
    assert freq == pytest.approx(0.8808, abs=0.012)


def test_bisection_start_and_final_beta():
    """Notes 1.5: beta starts at 0.15 in [0, 1]; above the target lower it to (beta + lower) / 2,
    else raise it to (beta + upper) / 2; after 10 trials prune once at the last updated beta. With
    pruned FLOPs = 100 beta and a target of 0.5 the trials are 0.15, 0.575, 0.3625, 0.46875, ..."""
    torch.manual_seed(0)
    pruner = PruneWrapper(cifar_resnet(20), 4, 2, cascade_passes=1, cascade_batch=2, verbose=False)
    seen = []

    def fake_prune(verbose=False, desc=""):
        seen.append(pruner.beta)
        return 100 * pruner.beta, 0.0

    pruner.prune = fake_prune
    pruner.initialize(0.5)
    assert seen[:4] == pytest.approx([0.15, 0.575, 0.3625, 0.46875])
    beta, lower, upper = 0.15, 0.0, 1.0
    for _ in range(10):
        if 100 * beta > 50:
            beta, upper = (beta + lower) / 2, beta
        else:
            beta, lower = (beta + upper) / 2, beta
    assert len(seen) == 11 and seen[-1] == pytest.approx(beta)
    assert seen[-1] not in seen[:-1]  # the final beta was never tried
