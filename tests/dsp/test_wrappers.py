"""GroupWrapper and PruneWrapper: the authors' API, the penalty step, beta thresholds, the cascade."""

import copy

import pytest
import torch
from torch import nn

from dsp_torch.dsp_module import (
    GroupWrapper,
    PruneWrapper,
    filter_pruned_indices,
    hard_assignment,
    prunable_convs,
)
from dsp_torch.flops import model_specs
from dsp_torch.group_lasso import reg_terms
from dsp_torch.models import cifar_resnet
from shared import flops as sflops
from shared.errors import UserError

pytestmark = pytest.mark.torch


def _batch(n=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g)


def test_layer_selection_and_filter_pruning_indices():
    model = cifar_resnet(20)
    names = [n for n, _ in prunable_convs(model)]
    assert len(names) == 18 and names[0] == "stage_1.0.conv_a" and names[-1] == "stage_3.2.conv_b"
    assert not any("downsample" in n or n == "conv_1_3x3" for n in names)
    assert filter_pruned_indices(18, 2) == list(range(1, 18, 2))  # conv_b of every block
    assert filter_pruned_indices(18, 2, [0, 5]) == [0, 5]  # the explicit list wins
    assert filter_pruned_indices(18, -1) == []
    with pytest.raises(ValueError):
        filter_pruned_indices(18, None)


def _group_setup(reg, second_order="none", seed=0):
    torch.manual_seed(seed)
    model = cifar_resnet(20)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3)
    gw = GroupWrapper(
        model,
        opt,
        nn.CrossEntropyLoss(),
        reg,
        10,
        4,
        0.5,
        second_order=second_order,
        generator=torch.Generator().manual_seed(1),
        verbose=False,
    )
    return model, opt, gw


def _task_step(model, opt, gw, x, y):
    gw.initialize()
    opt.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()


def test_group_wrapper_api_and_registration():
    model, opt, gw = _group_setup(2e-3)
    convs = [m for _, m in prunable_convs(model)]
    assert all(c.group.shape == (4, c.out_channels) and not c.group.any() for c in convs)
    assert len(opt.param_groups[0]["params"]) == len(list(model.parameters())) - len(convs)  # not in SGD
    x, y = _batch()
    with pytest.raises(RuntimeError, match="initialize"):
        gw.after_step(x, y)
    with pytest.raises(UserError, match="groups"):
        GroupWrapper(cifar_resnet(20), opt, nn.CrossEntropyLoss(), 1e-3, 10, 17, 0.5, verbose=False)


def test_trial_step_is_undone_and_logits_learn():
    """With lambda = 0 the model after after_step equals the model after the optimizer step: weights,
    BN statistics and momentum are restored; only the group logits move."""
    model, opt, gw = _group_setup(0.0)
    x, y = _batch()
    _task_step(model, opt, gw, x, y)
    after_sgd = copy.deepcopy({k: v for k, v in model.state_dict().items() if not k.endswith(".group")})
    momentum = [opt.state[p]["momentum_buffer"].clone() for p in opt.param_groups[0]["params"]]
    gw.after_step(x, y)
    for k, v in after_sgd.items():
        torch.testing.assert_close(model.state_dict()[k], v, rtol=0, atol=0)
    for p, m in zip(opt.param_groups[0]["params"], momentum):
        torch.testing.assert_close(opt.state[p]["momentum_buffer"], m, rtol=0, atol=0)
    assert all(c.group.abs().sum() > 0 for _, c in prunable_convs(model))
    assert gw.steps == 1 and gw.stats() > 0


def test_persisting_penalty_step_uses_hard_assignment():
    """W <- W - lambda * lr * (t + 1) / T * scale * dR/dW(W, one-hot(argmax group))."""
    lam = 0.5
    model, opt, gw = _group_setup(lam)
    x, y = _batch(seed=3)
    _task_step(model, opt, gw, x, y)
    w_sgd = [c.weight.detach().clone() for _, c in prunable_convs(model)]
    gw.after_step(x, y)
    coef = lam * 0.05 * 1 / 10
    for (_, conv), w, scale in zip(prunable_convs(model), w_sgd, gw.scales):
        expected = w - coef * scale * reg_terms(w, hard_assignment(conv.group.detach())).dR_dw().view_as(w)
        torch.testing.assert_close(conv.weight.detach(), expected, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("second_order", ["released", "exact"])
def test_second_order_variants_run(second_order):
    model, opt, gw = _group_setup(1e-3, second_order)
    x, y = _batch()
    _task_step(model, opt, gw, x, y)
    gw.after_step(x, y)
    assert torch.isfinite(torch.stack([c.group.sum() for _, c in prunable_convs(model)])).all()


# ---------------------------------------------------------------------------------------------------
# PruneWrapper
# ---------------------------------------------------------------------------------------------------


def _pruner(empty_group="prune", seed=0):
    torch.manual_seed(seed)
    model = cifar_resnet(20)
    pruner = PruneWrapper(
        model,
        4,
        2,
        empty_group=empty_group,
        cascade_passes=2,
        cascade_batch=8,
        generator=torch.Generator().manual_seed(0),
        verbose=False,
    )
    return model, pruner


def test_beta_threshold_hand_cases():
    _, pruner = _pruner()
    imp = torch.tensor([[0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1]])
    pruner.beta = 0.35  # cumulative shares 0.1, 0.3 < 0.35: the two smallest go
    assert pruner._threshold_keep(imp).tolist() == [[False, False, True, True], [True, True, False, False]]
    pruner.beta = 0.05  # nothing under beta: the released quirk prunes the whole row ...
    assert not pruner._threshold_keep(imp).any()
    ties = torch.full((1, 4), 0.25)
    pruner.beta = 0.6  # ties at the threshold are pruned too
    assert not pruner._threshold_keep(ties).any()
    _, keeper = _pruner("keep")
    keeper.beta = 0.05  # ... and the 'keep' variant keeps it
    assert keeper._threshold_keep(imp).all()


def test_group_channel_mask_and_filter_pruning():
    _, pruner = _pruner()
    conv = nn.Conv2d(3, 4, 1, bias=False)
    conv.register_buffer("mask", torch.ones(4, 3, 1, 1))
    # filters 0, 1 in group 0; filters 2, 3 in group 1. Group 0's channel energies 1:1:8, group 1's 8:1:1.
    conv.weight.data = torch.tensor([[1.0, 1, 2], [0, 0, 2], [2, 1, 0], [2, 0, 1]]).view(4, 3, 1, 1)
    prob = torch.tensor([[1.0, 1, 0, 0], [0, 0, 1, 1]])
    pruner.beta = 0.2  # group 0: shares 0.1, 0.1, 0.8 -> channels 0 and 1 go; group 1: 0.8, 0.1, 0.1 -> 1, 2 go
    pruner._find_mask(conv, prob)
    assert conv.mask.view(4, 3).tolist() == [[0, 0, 1], [0, 0, 1], [1, 0, 0], [1, 0, 0]]
    # filter energies 6, 4, 5, 5 (shares .3 .2 .25 .25): beta 0.22 prunes filter 1 only
    conv.mask.fill_(1)
    pruner.beta = 0.22
    pruner._find_mask_fp(conv)
    assert conv.mask.view(4, 3).sum(1).tolist() == [3, 0, 3, 3]


def test_initialize_hits_flops_target_and_matches_shared_counter():
    model, pruner = _pruner()
    pflops, pparams = pruner.initialize(0.5)
    assert abs(pflops - 50) < 1.0 and 0 < pparams < 100
    specs = model_specs(model)
    from shared import archs

    kept, dense = sflops.count(specs, "dsp-prunable"), sflops.count(archs.build("cifar-resnet20-B"), "dsp-prunable")
    fl, pa = kept.reduction_pct(dense)
    assert fl == pytest.approx(pflops, abs=1e-6) and pa == pytest.approx(pparams, abs=1e-6)
    for _, conv in prunable_convs(model):  # masks and weights agree
        assert not (conv.weight * (1 - conv.mask)).any()


def test_dead_unit_cascade_and_after_step():
    model, pruner = _pruner()
    block = model.stage_1[0]
    with torch.no_grad():
        block.conv_a.weight[5] = 0  # filter 5 of conv_a reads nothing: it feeds conv_b nothing
        block.bn_a.weight[5] = 1.0
    pruner._dead_unit_cascade()
    assert block.bn_a.weight[5] == 0 and block.bn_a.bias[5] == 0  # BN unit with zero gradient
    assert not block.conv_b.weight[:, 5].any() and not block.conv_b.mask[:, 5].any()  # input channel 5 dead
    # after_step: masked kernels stay zero, beta follows gamma = 0
    with torch.no_grad():
        block.conv_b.weight.add_(1.0)
        block.bn_a.bias[5] = 0.3
    pruner.after_step()
    assert not block.conv_b.weight[:, 5].any() and block.bn_a.bias[5] == 0
