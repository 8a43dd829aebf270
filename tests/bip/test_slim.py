"""Physical slimming: the slimmed network equals the masked one (eval mode) and executes fewer MACs."""

import pytest
import torch

from bip_torch import layers as L
from bip_torch.models import build
from bip_torch.slim import bake, effective_macs, executed_macs, slim

pytestmark = pytest.mark.torch


def _randomise_bn(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # non-trivial BN so that removed filters leave non-zero constants behind
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                for t, lo, hi in ((m.running_mean, -1, 1), (m.running_var, 0.5, 2), (m.weight, 0.5, 1.5)):
                    t.copy_(torch.empty(t.shape).uniform_(lo, hi, generator=g))
                m.bias.copy_(torch.empty(m.bias.shape).uniform_(-0.5, 0.5, generator=g))
    return model.eval()


@pytest.mark.parametrize(
    "arch,layer_type,size", [("resnet20s", "filter", 32), ("resnet20s", "channel", 32), ("ResNet18", "filter", 64)]
)
def test_slimmed_equals_masked(arch, layer_type, size):
    torch.manual_seed(1)
    m = _randomise_bn(build(arch, layer_type, 10, 0.5))
    s = slim(m, size)
    x = torch.randn(3, 3, size, size)
    with torch.no_grad():
        ref = m(x)
        assert (s(x) - ref).abs().max().item() < 1e-5 * ref.abs().max().item() + 1e-5
    # the block-internal convs really lost half their channels
    widths = list(s.slim_report.values())
    assert all(new == old - int(0.5 * old) for old, new in widths)
    dense_macs = executed_macs(build(arch, "dense", 10), size)
    assert executed_macs(s, size) < 0.6 * dense_macs
    assert not any(isinstance(mod, L.SubnetConv) for mod in s.modules())


def test_constant_channels_are_compensated():
    """Without the bias map (dropping the BN constants of removed filters) the outputs would differ."""
    torch.manual_seed(2)
    m = _randomise_bn(build("resnet20s", "filter", 10, 0.5), seed=3)
    s = slim(m, 32)
    maps = [mod for mod in s.modules() if getattr(mod, "bias_map", None) is not None]
    assert maps
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        good = (s(x) - m(x)).abs().max().item()
        for mod in maps:
            mod.bias_map.zero_()
        bad = (s(x) - m(x)).abs().max().item()
    assert good < 1e-4 < bad


def test_bake_and_macs_of_unstructured_masks():
    torch.manual_seed(3)
    m = build("resnet20s", "unstructured", 10, 0.1).eval()
    b = bake(m)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(b(x), m(x))
    nnz = sum(
        int((mod.weight != 0).sum()) for mod in b.modules() if isinstance(mod, (torch.nn.Conv2d, torch.nn.Linear))
    )
    assert nnz == 268_336 - int(0.9 * 268_336)
    # independent count: kept weights per layer x its output map (32, 16, 8 px per stage; FC 1)
    hw = {"conv1": 1024, "layer1": 1024, "layer2": 256, "layer3": 64, "fc": 1}
    rep = L.sparsity_report(m)["layers"]
    assert effective_macs(m) == sum(v["kept"] * hw[n.split(".")[0]] for n, v in rep.items())
