"""One iteration of each trainer on a tiny network against an independent, hand-written computation.

`code` (released BiP, research notes 1.3): lower step on the lower batch, then the mask step with the
implicit-gradient term as coded (-lr2 * g_mask * g_param slot by slot), torch-1.x SGD over ALL
parameters (zero gradients still decayed, one momentum buffer per optimizer), scores aliased to the
weights and updated one parameter at a time. `paper`: Algorithm A1 with separate scores.
The expected values below use only torch.nn.functional and numpy, never the trainers.
"""

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from bip_torch import layers as L
from bip_torch.bilevel import Backward, Torch1SGD, base_step, bilevel_step, paper_optimizers, paper_step
from shared.torch_train import DistContext
from tests.bip.tiny import batches, tiny

pytestmark = pytest.mark.torch
LR, MLR, MOM, WD, LR2, K = 0.05, 0.08, 0.9, 0.05, 0.5, 0.5


def global_mask_np(tensors, k):
    flat = np.concatenate([t.detach().abs().numpy().ravel() for t in tensors])
    j = int((1 - k) * flat.size)
    keep = np.ones(flat.size, dtype=np.float32)
    keep[np.argsort(flat, kind="stable")[:j]] = 0
    out, at = [], 0
    for t in tensors:
        out.append(torch.from_numpy(keep[at : at + t.numel()].reshape(t.shape)))
        at += t.numel()
    return out


def loss_fn(tc, tf, fb, bw, bb, mc, mf, x, y):
    h = F.conv2d(x, tc * mc, padding=1)
    h = F.relu(F.batch_norm(h, None, None, bw, bb, training=True, eps=1e-5))
    return F.cross_entropy(F.linear(h.flatten(1), tf * mf, fb), y)


def grads(state, batch, masks=None):
    """dl/dw (effective weights) and dl/d(fc.b, bn.w, bn.b) at the state, mask from |T| unless given."""
    tc, tf, fb, bw, bb = (v.detach().clone().requires_grad_(True) for v in state)
    mc, mf = masks if masks is not None else global_mask_np([state[0], state[1]], K)
    wc, wf = tc * mc, tf * mf
    wc.retain_grad()
    wf.retain_grad()
    h = F.relu(F.batch_norm(F.conv2d(batch[0], wc, padding=1), None, None, bw, bb, training=True, eps=1e-5))
    F.cross_entropy(F.linear(h.flatten(1), wf, fb), batch[1]).backward()
    return wc.grad, wf.grad, fb.grad, bw.grad, bb.grad, mc, mf


def upd(value, grad, key, bufs, lr, wd=WD, mom=MOM):
    d = grad + wd * value
    bufs[key] = d.clone() if key not in bufs else mom * bufs[key] + d
    return value - lr * bufs[key]


def released_iteration(state, lower, upper, bufs, first, lr2=LR2):
    tc, tf, fb, bw, bb = state
    # 1. lower step: grads at the current state on the lower batch; scores frozen (grad None on the
    #    first iteration, a zero tensor later: still decayed)
    gwc, gwf, gfb, gbw, gbb, mc, mf = grads(state, lower)
    tc = upd(tc, mc * gwc, "o.conv.w", bufs, LR)
    if not first:
        tc = upd(tc, torch.zeros_like(tc), "o.conv.s", bufs, LR)
    bw = upd(bw, gbw, "o.bn.w", bufs, LR)
    bb = upd(bb, gbb, "o.bn.b", bufs, LR)
    tf = upd(tf, mf * gwf, "o.fc.w", bufs, LR)
    fb = upd(fb, gfb, "o.fc.b", bufs, LR)
    if not first:
        tf = upd(tf, torch.zeros_like(tf), "o.fc.s", bufs, LR)
    # 2./3. the upper batch at the new state: score grads |T| dl/dw (aliased: s = theta = T)
    state = (tc, tf, fb, bw, bb)
    gwc, gwf, gfb, gbw, gbb, mc, mf = grads(state, upper)
    gsc, gsf = tc.abs() * gwc, tf.abs() * gwf
    # IG as coded: mask-step grad x all-trainable grad, slot by slot (weights 0, scores gs^2, BN gbn^2)
    gsc, gsf = gsc - lr2 * gsc * gsc, gsf - lr2 * gsf * gsf
    gbw, gbb = gbw - lr2 * gbw * gbw, gbb - lr2 * gbb * gbb
    z = torch.zeros_like
    tc = upd(tc, z(tc), "m.conv.w", bufs, MLR)  # frozen weight, zero grad: decayed, with momentum
    tc = upd(tc, gsc, "m.conv.s", bufs, MLR)  # reads the already-decayed shared storage
    bw = upd(bw, gbw, "m.bn.w", bufs, MLR)
    bb = upd(bb, gbb, "m.bn.b", bufs, MLR)
    tf = upd(tf, z(tf), "m.fc.w", bufs, MLR)
    fb = upd(fb, z(fb), "m.fc.b", bufs, MLR)
    tf = upd(tf, gsf, "m.fc.s", bufs, MLR)
    return (tc, tf, fb, bw, bb)


def model_state(m):
    return (m.conv.weight, m.fc.weight, m.fc.bias, m.bn.weight, m.bn.bias)


def run_released(lr2=LR2, iterations=2):
    m = tiny()
    L.alias_scores_to_weights(m)
    opt = Torch1SGD(m.parameters(), LR, MOM, WD)
    mopt = Torch1SGD(m.parameters(), MLR, MOM, WD)
    bw = Backward(DistContext())
    state = tuple(t.detach().clone() for t in model_state(m))
    bufs = {}
    m.train()
    for it in range(iterations):
        lower, upper = batches(10 + it), batches(20 + it)
        bilevel_step(m, opt, mopt, lower, upper, bw, lr2)
        state = released_iteration(state, lower, upper, bufs, first=it == 0, lr2=lr2)
    return m, state


def test_released_bilevel_iterations_equal_the_hand_derived_update():
    m, expected = run_released()
    for got, want in zip(model_state(m), expected):
        assert torch.allclose(got.detach(), want, atol=2e-6, rtol=0), (got - want).abs().max()
    # still aliased after the steps; four train-mode forwards per iteration moved the BN statistics
    assert m.conv.weight.data_ptr() == m.conv.popup_scores.data_ptr()
    assert m.fc.weight.data_ptr() == m.fc.popup_scores.data_ptr()
    assert int(m.bn.num_batches_tracked) == 8


def test_the_implicit_gradient_term_and_the_extra_decay_are_visible_at_this_scale():
    """Guards the test above: the terms it checks change the result by far more than its tolerance."""
    _, with_ig = run_released(lr2=LR2)
    _, without_ig = run_released(lr2=0.0)
    assert max((a - b).abs().max().item() for a, b in zip(with_ig, without_ig)) > 1e-4  # 50x the tolerance
    # a single weight decay per step (no zero-grad decay) gives another result
    m = tiny()
    L.alias_scores_to_weights(m)
    opt = torch.optim.SGD(m.parameters(), LR, MOM, weight_decay=WD)
    mopt = torch.optim.SGD(m.parameters(), MLR, MOM, weight_decay=WD)

    class NoneGrads(Backward):  # torch >= 2 semantics: frozen tensors have no gradient at all
        def __call__(self, model, x, y):
            for p in model.parameters():
                if not p.requires_grad:
                    p.grad = None
            return super().__call__(model, x, y)

    bw = NoneGrads(DistContext())
    m.train()
    lower, upper = batches(10), batches(20)
    # one released-like iteration without IG: only the decay semantics differ from run_released(lr2=0)
    L.switch_to_finetune(m)
    opt.zero_grad(set_to_none=True)
    bw(m, *lower)
    opt.step()
    L.switch_to_prune(m)
    mopt.zero_grad(set_to_none=True)
    bw(m, *upper)
    mopt.step()
    _, once = run_released(lr2=0.0, iterations=1)
    assert max((a.detach() - b).abs().max().item() for a, b in zip(model_state(m), once)) > 1e-4


def test_paper_variant_equals_algorithm_a1():
    alpha, beta, inv_gamma = 0.05, 0.1, 0.7
    m = tiny()
    L.copy_scores_from_weights(m)
    assert m.conv.weight.data_ptr() != m.conv.popup_scores.data_ptr()
    with torch.no_grad():  # scores distinct from |theta| so that grad_m and grad_theta differ
        m.conv.popup_scores.mul_(torch.rand_like(m.conv.popup_scores) + 0.5)
        m.fc.popup_scores.mul_(torch.rand_like(m.fc.popup_scores) + 0.5)
    sc, sf = m.conv.popup_scores.detach().clone(), m.fc.popup_scores.detach().clone()
    state = tuple(t.detach().clone() for t in model_state(m))
    lo, up = paper_optimizers(m, alpha, beta)
    lower, upper = batches(10), batches(20)
    m.train()
    paper_step(m, lo, up, lower, upper, Backward(DistContext()), inv_gamma)
    # theta-step with the mask z* = top-k(|m_t|)
    masks = global_mask_np([sc, sf], K)
    gwc, gwf, gfb, gbw, gbb, mc, mf = grads(state, lower, masks)
    tc, tf, fb, bw_, bb = state
    tc, tf = tc - alpha * mc * gwc, tf - alpha * mf * gwf
    fb, bw_, bb = fb - alpha * gfb, bw_ - alpha * gbw, bb - alpha * gbb
    # m-step at (m_t, theta_{t+1}): grad_m = sign(m) theta dl/dz; IG = -(1/gamma) dl/dz * (z* dl/dz)
    gwc, gwf, *_ = grads((tc, tf, fb, bw_, bb), upper, masks)
    want_sc = sc - beta * (sc.sign() * tc * gwc - inv_gamma * gwc * (mc * gwc))
    want_sf = sf - beta * (sf.sign() * tf * gwf - inv_gamma * gwf * (mf * gwf))
    for got, want in zip(model_state(m), (tc, tf, fb, bw_, bb)):
        assert torch.allclose(got.detach(), want, atol=1e-6, rtol=0)
    assert torch.allclose(m.conv.popup_scores.detach(), want_sc, atol=1e-6, rtol=0)
    assert torch.allclose(m.fc.popup_scores.detach(), want_sf, atol=1e-6, rtol=0)
    ig_size = (inv_gamma * gwc * (mc * gwc)).abs().max().item() * beta
    assert ig_size > 1e-4  # the IG term is well above the tolerance here


def test_base_step_in_prune_mode_moves_only_scores_and_bn_and_through_the_alias_the_weights():
    m = tiny()
    L.alias_scores_to_weights(m)
    L.switch_to_prune(m)
    opt = Torch1SGD(m.parameters(), LR, MOM, WD)
    before = m.conv.weight.detach().clone()
    fb = m.fc.bias.detach().clone()
    m.train()
    base_step(m, opt, batches(3), Backward(DistContext()))
    assert m.conv.weight.grad is None  # frozen from the start: never a gradient, never decayed
    assert torch.equal(m.fc.bias.detach(), fb)
    assert not torch.equal(m.conv.weight.detach(), before)  # the score step wrote into the weights


def test_accelerate_is_a_plain_score_step_then_a_weight_step():
    m = tiny()
    L.alias_scores_to_weights(m)
    opt, mopt = Torch1SGD(m.parameters(), LR, MOM, WD), Torch1SGD(m.parameters(), MLR, MOM, WD)
    lower, upper = batches(10), batches(20)
    tc, tf, fb, bw_, bb = (t.detach().clone() for t in model_state(m))
    m.train()
    bilevel_step(m, opt, mopt, lower, upper, Backward(DistContext()), LR2, accelerate=True)
    bufs = {}
    # score step on the upper batch (no IG); the frozen weights have no gradient yet: untouched
    gwc, gwf, gfb, gbw, gbb, mc, mf = grads((tc, tf, fb, bw_, bb), upper)
    tc = upd(tc, tc.abs() * gwc, "m.conv.s", bufs, MLR)
    bw_, bb = upd(bw_, gbw, "m.bn.w", bufs, MLR), upd(bb, gbb, "m.bn.b", bufs, MLR)
    tf = upd(tf, tf.abs() * gwf, "m.fc.s", bufs, MLR)
    # weight step on the lower batch; the scores now hold zero gradients: decayed
    gwc, gwf, gfb, gbw, gbb, mc, mf = grads((tc, tf, fb, bw_, bb), lower)
    tc = upd(upd(tc, mc * gwc, "o.conv.w", bufs, LR), torch.zeros_like(tc), "o.conv.s", bufs, LR)
    bw_, bb = upd(bw_, gbw, "o.bn.w", bufs, LR), upd(bb, gbb, "o.bn.b", bufs, LR)
    tf = upd(tf, mf * gwf, "o.fc.w", bufs, LR)
    fb = upd(fb, gfb, "o.fc.b", bufs, LR)
    tf = upd(tf, torch.zeros_like(tf), "o.fc.s", bufs, LR)
    for got, want in zip(model_state(m), (tc, tf, fb, bw_, bb)):
        assert torch.allclose(got.detach(), want, atol=2e-6, rtol=0), (got - want).abs().max()
