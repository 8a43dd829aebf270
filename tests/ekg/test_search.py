"""The search and fine-tuning equations against hand-computed cases: trimmed Otsu, step sizes, channel
ranking, teacher selection, KL with T (not T^2), the dynamic teacher subset; one real search iteration
of a small CIFAR ResNet checked against independent recomputation (argmin, running-mean knowledge, nesting,
fine_search landing just under the target)."""

from __future__ import annotations

import numpy as np
import pytest

from ekg_tf2.memory_bank import select_teachers

pytestmark = pytest.mark.tf

tf = pytest.importorskip("tensorflow")

from ekg_tf2.search import EKGSearch, SearchConfig, rank_channels, step_size, trimmed_otsu  # noqa: E402
from ekg_tf2.train import ekg_per_example, kl_t, teacher_subset  # noqa: E402


def _within_class_variance(values, threshold):
    lo, hi = values[values <= threshold], values[values > threshold]
    return sum(len(g) * g.var() for g in (lo, hi) if len(g)) / len(values)


def test_trimmed_otsu_threshold():
    costs = np.array([300, 0, 12, 1, 200, 2, 11, 3, 100, 10], float)
    # trim ceil(20 % of 10) = 2 at each end -> [2, 3, 10, 11, 12, 100]; the outlier 100 is split off
    assert trimmed_otsu(costs, 0.2) == 12
    # Otsu maximises the between-class variance = minimises the within-class variance (independent form)
    core = np.sort(costs)[2:-2]
    best = min(core[:-1], key=lambda t: _within_class_variance(core, t))
    assert trimmed_otsu(costs, 0.2) == best
    assert trimmed_otsu(costs, 0.0) == 100  # untrimmed, the split moves: the trim matters
    assert trimmed_otsu(np.array([5.0, 1.0]), 0.2) == 5.0  # too few to split: everyone is evaluated


def test_step_sizes():
    assert step_size(16, 1, 0.2) == pytest.approx(0.2)  # inner conv: 20 %
    assert step_size(16, 10, 0.2) == pytest.approx(1 / 16)  # stage group of ResNet-56: one channel
    assert step_size(64, 10, 0.2) == pytest.approx(0.02)


def test_rank_channels_keeps_removed_ones_last():
    score = np.array([0.5, 0.0, 3.0, 0.0, 1.0])
    kept = np.array([True, True, True, False, False])
    # kept by descending score (2, 0, 1), then the removed (4 before 3 by score)
    np.testing.assert_array_equal(rank_channels(score, kept), [1, 2, 0, 4, 3])


def test_teachers_at_evenly_spaced_losses():
    losses = [0.1, 0.5, 0.2, 0.9, 0.35, 0.6, 0.75, 0.12]
    # targets 0.1, 0.26, 0.42, 0.58, 0.74 -> nearest unused entries
    assert select_teachers(losses, 5) == [0, 2, 4, 5, 6]
    assert select_teachers([0.3, 0.1], 5) == [1, 0]  # fewer entries than teachers


def _np_kl(p_logits, q_logits, t):
    a = np.exp(p_logits / t) / np.exp(p_logits / t).sum(-1, keepdims=True)
    b = np.exp(q_logits / t) / np.exp(q_logits / t).sum(-1, keepdims=True)
    return (a * np.log(a / b)).sum(-1)


def test_kl_is_multiplied_by_t_not_t_squared():
    p = np.array([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]], "f")
    q = np.array([[0.0, 1.0, 0.0], [1.0, -2.0, 0.0]], "f")
    got = kl_t(tf.constant(p), tf.constant(q), 4.0).numpy()
    np.testing.assert_allclose(got, 4.0 * _np_kl(p, q, 4.0), rtol=1e-5)


def test_dynamic_teacher_subset_and_the_fine_tuning_loss():
    top = np.array([[3.0, 0.0, 0.0], [0.0, 2.0, 0.0]], "f")
    far = np.array([[0.0, 0.0, 5.0], [5.0, 0.0, 0.0]], "f")
    bank = np.stack([top, top + 0.01, far], -1)  # teacher 1 ~ teacher 0, teacher 2 far away
    student = np.array([[1.0, 0.5, 0.0], [0.0, 0.5, 0.5]], "f")
    views = np.stack([student, student + 0.2])
    target, keep = teacher_subset(tf.constant(views), tf.constant(bank), 4.0)
    np.testing.assert_array_equal(keep.numpy(), [True, True, False])
    np.testing.assert_allclose(target.numpy(), (top + top + 0.01) / 2, rtol=1e-6)
    # a student that matches teacher 0 keeps only teacher 0 (always kept)
    _, keep = teacher_subset(tf.constant(np.stack([top, top])), tf.constant(bank), 4.0)
    np.testing.assert_array_equal(keep.numpy(), [True, False, False])
    # Eq. 12 per example: 0.5 * sum over views of CE + T * KL(M-bar || view)
    labels = np.array([0, 2])
    got = ekg_per_example(tf.constant(views), tf.constant(labels, tf.int32), tf.constant(bank), 4.0).numpy()
    mbar = (top + top + 0.01) / 2
    expected = 0.0
    for v in views:
        logp = v - np.log(np.exp(v).sum(-1, keepdims=True))
        expected = expected + (-logp[np.arange(2), labels] + 4.0 * _np_kl(mbar, v, 4.0))
    np.testing.assert_allclose(got, 0.5 * expected, rtol=1e-5)


@pytest.fixture(scope="module")
def live_resnet20():
    from ekg_tf2.models import ResNet

    model = ResNet("ResNet-8", 10, seed=3)  # test-size CIFAR ResNet, one block per stage
    for name, layer in model.layers.items():
        if name.endswith("bn2"):
            layer.gamma.assign(tf.ones_like(layer.gamma))  # live residual branches (init has gamma 0)
    return model


def test_one_search_iteration_against_independent_recomputation(live_resnet20):
    model = live_resnet20
    x = tf.random.stateless_normal([24, 32, 32, 3], seed=(5, 5)).numpy()
    y = np.arange(24) % 10
    search = EKGSearch(
        model, tf.distribute.get_strategy(), x, y, SearchConfig(0.5, search_batch_size=12), log=lambda s: None
    )
    ev0 = search.start()
    before = {g: set(gate.kept_indices()) for g, gate in model.gates.items()}
    info = search.step()
    # exactly one gate narrowed, to its candidate width; the others untouched and nested
    after = {g: set(gate.kept_indices()) for g, gate in model.gates.items()}
    changed = [g for g in after if after[g] != before[g]]
    assert changed == [info["gate"]]
    assert after[info["gate"]] < before[info["gate"]]
    # the chosen one had the lowest score of those evaluated, and only cheap candidates were evaluated
    assert info["score"] == min(info["scores"]) and info["evaluated"] <= info["candidates"]
    # T_1 = (T_0 + logits of the chosen sub-network) / 2, recomputed independently with plain calls
    chosen_logits = np.concatenate([model(tf.constant(x[i : i + 12]), training=True).numpy() for i in (0, 12)])
    np.testing.assert_allclose(search.knowledge, (ev0["logits"] + chosen_logits) / 2, atol=1e-4)

    # its recorded score = sum over batches of sum_b [CE + CE(softmax(T_0), logits)] / batch
    def ce(t, logits):
        logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
        return -(t * logp).sum(-1)

    onehot = np.eye(10)[y]
    t0 = np.exp(ev0["logits"]) / np.exp(ev0["logits"]).sum(-1, keepdims=True)
    per = ce(onehot, chosen_logits) + ce(t0, chosen_logits)
    assert info["score"] == pytest.approx(per[:12].sum() / 12 + per[12:].sum() / 12, rel=1e-4)
    assert len(search.history) == 2 and search.history[1]["kept"][info["gate"]] == info["kept"]


def test_fine_search_lands_just_under_the_target(live_resnet20):
    from ekg_tf2.models import build_model

    model = build_model("ResNet-20", "CIFAR10")
    x, y = np.zeros([4, 32, 32, 3], "f"), np.zeros(4, int)
    search = EKGSearch(model, tf.distribute.get_strategy(), x, y, SearchConfig(0.97), log=lambda s: None)
    gate = "BasicBlock0.0/conv1"
    cand = {"gate": gate, "rate": 0.0, "kept": 1, "cost": 0.0}  # would overshoot 0.97 by far
    got = search.fine_search(cand)
    full = search.full_kept()
    flops_at = lambda k: search.flops({**full, gate: k})  # noqa: E731
    assert flops_at(got["kept"]) <= search.target_flops < flops_at(got["kept"] + 1)
    assert got["rate"] == got["kept"] / 16 and got["fine_search"]
