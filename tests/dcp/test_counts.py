"""Golden counts (framework-free): PocketFlow's conv MACs as its users' logs show them, the paper's
supplementary complexity tables S4/S5, and the kept-channel rule c - floor(eta c)."""

from __future__ import annotations

import json

import pytest

from shared import archs, flops


def n_convs(specs) -> int:
    return sum(isinstance(s, flops.Conv) for s in specs)


def test_pocketflow_resnet20_has_22_convs_and_41074688_conv_macs():
    specs = archs.pocketflow_resnet(20, "cifar10")
    assert n_convs(specs) == 22  # 1 stem + 3 projections (one per stage, stage 1 too) + 18
    assert flops.count(specs, "conv-only").macs == 41_074_688  # PocketFlow issue #52: 20,537,344 x 2


@pytest.mark.parametrize("size,convs", [(18, 21), (34, 37), (50, 53)])
def test_pocketflow_imagenet_conv_counts(size, convs):
    assert n_convs(archs.pocketflow_resnet(size, "ilsvrc12")) == convs


def test_pocketflow_resnet18_conv_macs_match_the_users_log():
    specs = archs.pocketflow_resnet(18, "ilsvrc12")
    assert flops.count(specs, "conv-only").macs == 1_826_406_400  # issue #98: preserve 913,203,200 at 0.5
    assert specs[-1].d_out == 1001  # index 0 = background


# Supplementary Table S5 (CIFAR PreResNet-56) and S4 (ImageNet ResNet-18/50): params, FLOPs (MACs), 3 digits
S5 = {0.0: (8.56e5, 1.26e8), 0.3: (6.08e5, 9.13e7), 0.5: (4.31e5, 6.32e7), 0.7: (2.71e5, 3.98e7)}
S4 = {
    (18, 0.0): (1.17e7, 1.81e9),
    (18, 0.3): (8.41e6, 1.32e9),
    (18, 0.5): (6.19e6, 9.76e8),
    (18, 0.7): (4.01e6, 6.49e8),
    (50, 0.0): (2.56e7, 4.09e9),
    (50, 0.3): (1.70e7, 2.63e9),
    (50, 0.5): (1.24e7, 1.82e9),
    (50, 0.7): (8.71e6, 1.18e9),
}


def three_digits(x: float) -> float:
    return float(f"{x:.2e}")


@pytest.mark.parametrize("eta", sorted(S5))
def test_preresnet56_matches_supplementary_table_s5(eta):
    c = flops.count(archs.dcp_preresnet(56, eta), "conv-fc")
    assert (three_digits(c.params), three_digits(c.macs)) == S5[eta]


def test_preresnet56_exact_baseline_and_paper_reduction_at_half():
    base, half = (flops.count(archs.dcp_preresnet(56, e), "conv-fc") for e in (0.0, 0.5))
    assert base.params == 855_578
    assert round(base.macs / half.macs, 2) == 1.99  # Table 1: 1.99x fewer FLOPs


@pytest.mark.parametrize("depth,eta", sorted(S4))
def test_imagenet_resnets_match_supplementary_table_s4(depth, eta):
    c = flops.count(archs.dcp_imagenet_resnet(depth, eta), "conv-fc")
    assert (three_digits(c.params), three_digits(c.macs)) == S4[(depth, eta)]


@pytest.mark.parametrize(
    "c,eta,kept",
    [(16, 0.5, 8), (32, 0.3, 23), (64, 0.7, 20), (10, 0.7, 3), (100, 0.29, 71), (16, 0.0, 16), (7, 0.5, 4)],
)
def test_kept_channels_is_c_minus_floor_eta_c(c, eta, kept):
    assert archs.dcp_kept(c, eta) == kept


def test_pocketflow_counts_prune_every_conv_but_the_stem():
    specs = archs.pocketflow_resnet(20, "cifar10", 0.5)
    convs = [s for s in specs if isinstance(s, flops.Conv)]
    assert convs[0].c_in == 3
    dense = [s for s in archs.pocketflow_resnet(20, "cifar10") if isinstance(s, flops.Conv)]
    assert [c.c_in for c in convs[1:]] == [d.c_in - d.c_in // 2 for d in dense[1:]]
    assert [c.c_out for c in convs] == [d.c_out for d in dense]  # outputs unchanged without `slim`


def test_flops_cli_prints_the_paper_counts(capsys):
    from dcp_tf import flops as dflops

    assert dflops.main(["--resnet_size", "56", "--dcp_variant", "paper", "--dcp_prune_ratio", "0.5"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["params"] == 430_634 and out["macs"] == 63_226_496 and round(out["flops_reduction_x"], 2) == 1.99


def test_flops_cli_rejects_a_ratio_of_one(capsys):
    from dcp_tf import flops as dflops

    assert dflops.main(["--dcp_prune_ratio", "1.0"]) == 2
    assert "--dcp_prune_ratio must be in [0.0, 1.0)" in capsys.readouterr().err
