"""Models (parameter counts of research notes 1.4) and the mask rules of the three layer types on
hand-made tensors: kept counts N - floor((1-k) N), L2 ranking, global vs per-layer, reported sparsity."""

import pytest
import torch

from bip_torch import layers as L
from bip_torch.models import ARCHS, build
from tests.bip.tiny import tiny

pytestmark = pytest.mark.torch


@pytest.mark.parametrize(
    "arch,classes,prunable,total",
    [
        ("resnet20s", 10, 268_336, 269_722),  # the sparsity denominator of L.sparsity_report: tested below
        ("resnet20s", 100, 274_096, None),
        ("resnet56s", 10, 848_944, 853_018),
        ("resnet18", 10, 11_164_352, 11_173_962),
        ("resnet18", 200, 11_261_632, None),
        ("vgg16_bn", 10, 15_302_848, 15_311_818),
        ("ResNet18", 200, 11_269_312, None),
        ("ResNet50", 1000, 25_502_912, 25_557_032),
    ],
)
def test_parameter_counts_match_the_released_models(arch, classes, prunable, total):
    with torch.device("meta"):  # shapes only: no memory, no init
        m = build(arch, "unstructured", classes)
    assert sum(mod.weight.numel() for _, mod in L.masked_modules(m)) == prunable
    if total is not None:
        assert sum(p.numel() for n, p in m.named_parameters() if not n.endswith("popup_scores")) == total


def test_sparsity_report_denominator_is_the_prunable_count():
    assert L.sparsity_report(build("resnet20s", "unstructured", 10, 0.1))["total"] == 268_336


def test_every_original_name_builds_and_runs():
    assert {"resnet20s", "resnet32s", "resnet44s", "resnet56s", "resnet18", "resnet34", "resnet50"} <= set(ARCHS)
    assert {"ResNet18", "ResNet34", "ResNet50", "vgg16_bn", "wrn_28_4", "wrn_28_10"} <= set(ARCHS)
    out = build("wrn_28_4", "filter", 10, 0.5)(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10)


def test_state_dict_keys_are_the_originals():
    keys = set(build("resnet20s", "unstructured").state_dict())
    assert {"conv1.weight", "conv1.popup_scores", "layer1.0.conv2.popup_scores", "fc.weight", "fc.popup_scores"} <= keys
    keys = set(build("resnet18", "filter").state_dict())
    assert {"layer2.0.shortcut.0.weight", "layer2.0.shortcut.0.popup_scores", "linear.weight"} <= keys
    assert "linear.popup_scores" not in keys  # FC dense in structured modes
    assert "layer2.0.downsample.0.popup_scores" in set(build("ResNet18", "channel").state_dict())


def test_topk_keeps_n_minus_floor_of_the_pruned_share():
    for n in (7, 100, 268_336):
        for k in (0.8, 0.512, 0.1342, 0.1, 0.0092, 1.0):
            mask = L.topk_mask(torch.rand(n), k)
            assert int(mask.sum()) == n - int((1 - k) * n)


def test_global_unstructured_ranks_all_layers_together_on_raw_magnitudes():
    m = tiny(k=0.5)  # conv 18 weights + fc 96 weights
    with torch.no_grad():
        m.conv.popup_scores.copy_(-torch.arange(1, 19, dtype=torch.float).view(2, 1, 3, 3) * 10)  # big |s|
        m.fc.popup_scores.copy_(torch.linspace(0.01, 1, 96).view(3, 32))
    masks = L.global_masks(m)
    assert int(masks["conv"].sum()) == 18  # negative but large scores: |s| ranks them on top
    assert int(masks["fc"].sum()) == 114 - 57 - 18  # 57 pruned, all from the fc
    assert torch.equal(masks["fc"].flatten()[:57], torch.zeros(57))
    rep = L.sparsity_report(m)
    assert rep["kept"] == 57 and rep["total"] == 114
    assert rep["layers"]["conv"]["sparsity"] == 0.0 and rep["layers"]["fc"]["kept"] == 39


def test_filter_mask_ranks_filters_by_l2_not_l1():
    s = torch.zeros(2, 4, 1, 1)
    s[0, :, 0, 0] = torch.tensor([3.0, 0, 0, 0])  # L2 3.0, L1 3.0
    s[1, :, 0, 0] = torch.tensor([1.4, 1.4, 1.4, -1.4])  # L2 2.8, L1 5.6
    mask = L.filter_mask(s.abs(), 0.5)
    assert torch.equal(mask[0], torch.ones(4, 1, 1)) and torch.equal(mask[1], torch.zeros(4, 1, 1))


def test_channel_mask_ranks_input_channels_and_can_drop_rgb_inputs():
    s = torch.zeros(2, 3, 1, 2)
    s[:, 0] = 1.0  # channel 0: L2 over (kh, kw) = sqrt(2) per filter, then over filters = 2.0
    s[0, 1] = torch.tensor([[2.5, 0.0]])  # channel 1: 2.5 in one filter only -> 2.5
    s[:, 2] = torch.tensor([[0.9, 0.9]])  # channel 2: sqrt(4 * 0.81) = 1.8 (L1 would give 3.6, the top)
    mask = L.channel_mask(s, 0.1)  # int(0.9 * 3) = 2 of 3 input channels pruned
    assert torch.equal(mask.sum(dim=(0, 2, 3)), torch.tensor([0.0, 4.0, 0.0]))
    mask = L.channel_mask(s, 0.67)  # int(0.33 * 3) = 0 pruned... 0.99 -> 0
    assert int(mask.sum()) == s.numel()
    mask = L.channel_mask(s, 0.5)  # int(0.5 * 3) = 1 pruned: channel 2 (L2 1.8 < 2.0 < 2.5)
    assert torch.equal(mask.sum(dim=(0, 2, 3)), torch.tensor([4.0, 4.0, 0.0]))


def test_structured_modes_prune_per_layer_and_keep_the_fc_dense():
    m = build("resnet20s", "filter", 10, 0.3)
    rep = L.sparsity_report(m)
    for name, layer in rep["layers"].items():
        mod = m.get_submodule(name)
        if name == "fc":
            assert layer["sparsity"] == 0.0
        else:
            kept_filters = mod.out_channels - int(0.7 * mod.out_channels)
            assert layer["kept"] == kept_filters * mod.weight[0].numel()
    m = build("resnet20s", "channel", 10, 0.1)
    assert L.sparsity_report(m)["layers"]["conv1"]["kept"] == 16 * 9  # 1 of 3 RGB inputs kept


def test_straight_through_gives_dense_score_gradients():
    m = tiny(k=0.5)
    L.switch_to_prune(m)
    x = torch.randn(4, 1, 4, 4)
    m(x).sum().backward()
    g = m.fc.popup_scores.grad
    masks = L.global_masks(m)
    pruned = masks["fc"] == 0
    assert (g[pruned] != 0).any()  # pruned entries get gradient too
    assert m.conv.weight.grad is None  # frozen in prune mode


def test_aliasing_shares_storage_and_copy_does_not():
    m = tiny()
    L.alias_scores_to_weights(m)
    assert m.conv.weight.data_ptr() == m.conv.popup_scores.data_ptr()
    m2 = tiny()
    L.copy_scores_from_weights(m2)
    assert m2.conv.weight.data_ptr() != m2.conv.popup_scores.data_ptr()
    assert torch.equal(m2.conv.popup_scores, m2.conv.weight.abs())
    m3 = tiny()
    w = m3.conv.weight.detach().clone()
    L.hydra_scaled_score_init(m3)
    assert torch.allclose(m3.conv.popup_scores, (6 / 9) ** 0.5 * w / w.abs().max())
