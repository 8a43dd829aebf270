"""EKG's counter: golden values of the code's rule and the literature's, gate counts, and the counter
measuring masked candidates, slimmed networks and the independent `shared.archs` specs alike."""

from __future__ import annotations

import pytest

from shared import archs, flops

# framework-free: the convention itself, on the shared layer specs


def test_ekg_code_convention_golden_values_on_shared_specs():
    r56 = flops.count(archs.cifar_resnet(56, "B"), "ekg-code")
    assert r56.macs == pytest.approx(126.84e6, abs=0.005e6)  # conv MACs + 2*H*W*C per BN + FC
    assert r56.params == pytest.approx(0.860e6, abs=0.0005e6)  # BN moving statistics counted
    assert flops.count(archs.cifar_resnet(56, "B"), "conv-fc").macs == pytest.approx(125.75e6, abs=0.005e6)
    r50 = flops.count(archs.imagenet_resnet(50), "ekg-code")
    assert r50.macs == pytest.approx(4.111e9, abs=0.0005e9)
    assert r50.params == pytest.approx(25.61e6, abs=0.005e6)
    # the BN term alone: 2 * H * W * C over every BN of ResNet-56 (hand sum)
    bn = 2 * (32 * 32 * 16 * (1 + 18) + 16 * 16 * 32 * (18 + 1) + 8 * 8 * 64 * (18 + 1))
    assert r56.macs - flops.count(archs.cifar_resnet(56, "B"), "conv-fc").macs == bn


@pytest.mark.tf
def test_models_count_like_the_shared_specs_and_have_the_original_gate_counts():
    pytest.importorskip("tensorflow")
    from ekg_tf2.flops import count
    from ekg_tf2.models import build_model

    r56 = build_model("ResNet-56", "CIFAR10")
    for conv in ("ekg-code", "conv-fc"):
        assert count(r56, conv).macs == flops.count(archs.cifar_resnet(56, "B"), conv).macs
        assert count(r56, conv).params == flops.count(archs.cifar_resnet(56, "B"), conv).params
    assert len(r56.widths) == 30
    r50 = build_model("ResNet-50", "ILSVRC")
    assert count(r50).macs == flops.count(archs.imagenet_resnet(50), "ekg-code").macs
    assert count(r50).params == flops.count(archs.imagenet_resnet(50), "ekg-code").params
    assert len(r50.widths) == 37
    r50.attach_gates()
    assert r50.gates["Bottleneck0.0/conv3"].num_call == 4  # conv3 + 3 block outputs write through it
    assert r50.gates["Bottleneck0.0/conv0"].num_call == 1


@pytest.mark.tf
def test_a_masked_candidate_counts_as_its_slimmed_network():
    pytest.importorskip("tensorflow")
    from ekg_tf2 import params
    from ekg_tf2.flops import count
    from ekg_tf2.models import build_model

    model = build_model("ResNet-20", "CIFAR10")
    model.attach_gates()
    model.gates["conv"].set_rate(10 / 16)
    model.gates["BasicBlock1.1/conv1"].set_rate(0.5)
    model.gates["BasicBlock2.0/conv3"].set_rate(0.75)
    masked = count(model)
    slimmed = params.model_from_params("ResNet-20", "CIFAR10", params.slim(model))
    assert count(slimmed) == masked
    assert slimmed.widths["conv"] == 10 and slimmed.widths["BasicBlock2.0/conv3"] == 48
    expected = flops.count(archs.cifar_resnet(20, "B"), "ekg-code").macs
    assert masked.macs < expected
    # the kept-override measures the same candidate without applying it
    model2 = build_model("ResNet-20", "CIFAR10")
    model2.attach_gates()
    kept = {g: gate.live() for g, gate in model.gates.items()}
    assert count(model2, kept=kept) == masked
