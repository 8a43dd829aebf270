"""Physical slimming: the slimmed network equals the masked one (eval mode) and executes fewer MACs."""

import pytest
import torch

from bip_torch import layers as L
from bip_torch.models import build, resnet, resnet_cifar, vgg_cifar, wideresnet
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
    # the block-internal convs (one per basic block) really lost half their channels
    widths = list(s.slim_report.values())
    assert len(widths) == {"resnet20s": 9, "ResNet18": 8}[arch]
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


def _tiny(make, layer_type, k=0.5):
    model = make(layer_type)
    L.set_prune_rate(model, k)
    return L.install_global_mask(model)


# Tiny widths of the other architectures, with the parameter count of the slimmed network by hand
# (k = 0.5: every ranked layer keeps half its filters / input channels; conv = in x out x kh x kw).
_VGG = lambda lt: vgg_cifar.VGG([4, 4, "M", 8, "M", 8, "M"], lt)  # noqa: E731
_WRN = lambda lt: wideresnet.WideResNet(10, 1, lt)  # noqa: E731  (one block per stage, widths 16-16-32-64)
_R50C = lambda lt: resnet_cifar.ResNetCifar(resnet_cifar.Bottleneck, [1, 1, 1, 1], lt, 10, width=4)  # noqa: E731
_R50T = lambda lt: resnet.ResNet(resnet.Bottleneck, [1, 1, 1, 1], lt, 10, width=4)  # noqa: E731
_FC_VGG = lambda c: c * 4 * 256 + 256 + 256 * 256 + 256 + 256 * 10 + 10  # noqa: E731  (2x2 pool: 4 features per channel)


def _bottleneck_blocks(conv3_bias: bool) -> int:
    """The four bottlenecks (in, planes, out = 4 planes) with conv1 / conv2 at half their planes."""
    total = 0
    for cin, planes in ((4, 4), (16, 8), (32, 16), (64, 32)):
        h, out = planes // 2, 4 * planes
        total += cin * h + 2 * h + h * h * 9 + 2 * h + h * out + 2 * out  # conv1, bn1, conv2, bn2, conv3, bn3
        total += out * conv3_bias  # filter masks: the constants of removed conv2 filters become conv3's bias
        total += cin * out + 2 * out  # projection shortcut + BN (residual stream: not slimmed)
    return total + 128 * 10 + 10  # FC


_WRN_COUNT = (  # each block's conv1 -> bn2 -> conv2 channels halve; stem, bn1s, conv2 outputs, shortcuts, FC stay
    3 * 16 * 9
    + (2 * 16 + 16 * 8 * 9 + 2 * 8 + 8 * 16 * 9)
    + (2 * 16 + 16 * 16 * 9 + 2 * 16 + 16 * 32 * 9 + 16 * 32)
    + (2 * 32 + 32 * 32 * 9 + 2 * 32 + 32 * 64 * 9 + 32 * 64)
    + 2 * 64
    + 64 * 10
    + 10
)
CASES = {
    # filter: kept filters 2, 2, 4, 4; the FC reads the 4 kept channels of the last conv
    "vgg-filter": (_VGG, 3 * 2 * 9 + 2 * 2 * 9 + 2 * 4 * 9 + 4 * 4 * 9 + 2 * (2 + 2 + 4 + 4) + _FC_VGG(4)),
    # channel: each conv reads half its inputs (the stem keeps its 3 RGB inputs); the last conv keeps its
    # 8 filters (the FC is dense)
    "vgg-channel": (_VGG, 3 * 2 * 9 + 2 * 2 * 9 + 2 * 4 * 9 + 4 * 8 * 9 + 2 * (2 + 2 + 4 + 8) + _FC_VGG(8)),
    "wrn-filter": (_WRN, _WRN_COUNT),
    "wrn-channel": (_WRN, _WRN_COUNT),
    "resnet50cifar-filter": (_R50C, 3 * 4 * 9 + 2 * 4 + _bottleneck_blocks(conv3_bias=True)),
    "resnet50cifar-channel": (_R50C, 3 * 4 * 9 + 2 * 4 + _bottleneck_blocks(conv3_bias=False)),
    "ResNet50-filter": (_R50T, 3 * 4 * 49 + 2 * 4 + _bottleneck_blocks(conv3_bias=True)),  # 7x7 stem
    "ResNet50-channel": (_R50T, 3 * 4 * 49 + 2 * 4 + _bottleneck_blocks(conv3_bias=False)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_other_architectures_slim_to_the_hand_count_and_equal_the_masked_model(case):
    make, count = CASES[case]
    torch.manual_seed(4)
    m = _randomise_bn(_tiny(make, case.rsplit("-", 1)[1]), seed=5)
    s = slim(m, 32)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ref = m(x)
        diff = (s(x) - ref).abs().max().item()
    print(f"{case}: max |slimmed - masked| = {diff:.1e} (outputs up to {ref.abs().max().item():.2f})")
    assert diff < 1e-5 * max(1.0, ref.abs().max().item())
    assert sum(p.numel() for p in s.parameters()) == count
    assert not any(isinstance(mod, L.SubnetConv) for mod in s.modules())
