"""Golden FLOPs/params values from the literature, under the named conventions."""

import pytest

from shared import archs, flops
from shared.errors import UserError

GOLDEN = [
    # arch, convention, MACs, params
    ("cifar-resnet20-A", "conv-fc", 40_551_040, 269_722),  # 40.55M / 0.27M
    ("cifar-resnet56-A", "conv-fc", 125_485_696, 853_018),  # 125.49M / 0.85M
    ("cifar-resnet110-A", "conv-fc", 252_887_680, 1_727_962),  # 252.89M / 1.73M
    ("cifar-resnet20-B", "conv-fc", 40_813_184, 272_474),  # 40.81M
    ("cifar-resnet56-B", "conv-fc", 125_747_840, 855_770),  # 125.75M (pycls R-56: 125,747,850 incl. adds)
    ("cifar-resnet20-B", "dsp-prunable", 40_108_032, 267_264),
    ("cifar-resnet56-B", "dsp-prunable", 125_042_688, 847_872),
    ("imagenet-resnet18", "conv-fc", 1_814_073_344, 11_689_512),  # 1.814G / 11.69M
    ("imagenet-resnet50", "conv-fc", 4_089_184_256, 25_557_032),  # 4.089G / 25.56M
    ("ista-resnet20", "ista-slim", 41_599_616, 281_304),
    ("ista-cnn4", "ista-slim", 147_754_752, 1_986_760),
    ("ista-convnet-32-64-64-128", "ista-slim", 18_056_448, 224_008),
]


@pytest.mark.parametrize("arch,convention,macs,params", GOLDEN)
def test_golden(arch, convention, macs, params):
    c = flops.count(archs.build(arch), convention)
    assert (c.macs, c.params) == (macs, params)


def test_rounded_literature_values():
    def m(a, conv="conv-fc"):
        c = flops.count(archs.build(a), conv)
        return round(c.macs / 1e6, 2), round(c.params / 1e6, 2)

    assert m("cifar-resnet20-A") == (40.55, 0.27)
    assert m("cifar-resnet56-A") == (125.49, 0.85)
    assert m("cifar-resnet110-A") == (252.89, 1.73)


def test_weights_only_is_distillers_count():
    c = flops.count(archs.build("cifar-resnet56-B"), "weights-only")
    assert c.params == 851_504 and c.macs == 125_747_840


def test_kernel_pairs_count_intra_channel_pruning():
    dense = flops.Conv("c", 16, 16, 3, 32, role="prunable")
    half = flops.Conv("c", 16, 16, 3, 32, role="prunable", kernel_pairs=128)
    d, h = flops.count([dense], "dsp-prunable"), flops.count([half], "dsp-prunable")
    assert (d.macs, d.params) == (16 * 16 * 9 * 1024, 2304)
    assert (h.macs, h.params) == (128 * 9 * 1024, 1152)
    assert h.reduction_pct(d) == (50.0, 50.0)


def test_bn_counting_per_convention():
    bn_beta_only = flops.BatchNorm("bn", 10, scale=False)
    assert flops.count([bn_beta_only], "ista-slim").params == 30  # beta + mean + var
    assert flops.count([bn_beta_only], "conv-fc").params == 10
    assert flops.count([bn_beta_only], "weights-only").params == 0


def test_unknown_names_are_clear_errors():
    with pytest.raises(UserError, match="unknown counting convention"):
        flops.count([], "nope")
    with pytest.raises(UserError, match="unknown architecture"):
        archs.build("resnet-57")
    with pytest.raises(UserError, match="6n\\+2"):
        archs.cifar_resnet(21)
