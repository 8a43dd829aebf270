"""shared.flops conv+FC MACs against PyTorch's own counter, `torch.utils.flop_counter.FlopCounterMode`.

FlopCounterMode counts a multiply-accumulate as 2 FLOPs and counts only matrix-like ops:
    conv:  2 * N * C_out * H_out * W_out * (C_in / groups) * k_h * k_w   (bias not counted)
    addmm: 2 * N * d_in * d_out                                          (the FC; bias not counted)
BN, ReLU, pooling, additions, gathers and index_add count 0. At batch N = 1 it must therefore report
exactly 2 x the `conv-fc` MACs of shared.flops, whose layer specs here come from an independent
description of each architecture (`shared.archs`, written from the papers' tables) or from the
framework adapter's hooks. A wrong output size, a forgotten stride or shortcut, or a FC counted twice
breaks the equality. Models are built on the meta device where no pruned weights are needed (shapes
only, no arithmetic)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.torch

torch = pytest.importorskip("torch")
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from shared import archs  # noqa: E402
from shared import flops as sflops  # noqa: E402


def torch_flops(model, image_size: int, device: str = "cpu") -> int:
    """FLOPs FlopCounterMode reports for one forward pass of one image."""
    x = torch.zeros(1, 3, image_size, image_size, device=device)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.eval()(x)
    return counter.get_total_flops()


def conv_fc_macs(specs) -> int:
    return sflops.count(specs, "conv-fc").macs


def _on_meta(factory):
    with torch.device("meta"):
        return factory()


def _dsp_cifar(depth):
    from dsp_torch.models import cifar_resnet

    return lambda: cifar_resnet(depth)


def _bip(arch):
    from bip_torch.models import ARCHS

    return lambda: ARCHS[arch]()


def _torchvision(arch):
    import torchvision

    return lambda: getattr(torchvision.models, arch)(weights=None)


@pytest.mark.parametrize(
    "what,factory,arch,size",
    [
        ("dsp ResNet-20 (option B)", _dsp_cifar(20), "cifar-resnet20-B", 32),
        ("dsp ResNet-56 (option B)", _dsp_cifar(56), "cifar-resnet56-B", 32),
        ("bip resnet20s (option A)", _bip("resnet20s"), "cifar-resnet20-A", 32),
        ("bip resnet56s (option A)", _bip("resnet56s"), "cifar-resnet56-A", 32),
        ("torchvision resnet18", _torchvision("resnet18"), "imagenet-resnet18", 224),
        ("torchvision resnet50", _torchvision("resnet50"), "imagenet-resnet50", 224),
    ],
)
def test_arch_specs_match_flop_counter(what, factory, arch, size):
    model = _on_meta(factory)
    counted = torch_flops(model, size, device="meta")
    macs = conv_fc_macs(archs.build(arch))
    assert counted == 2 * macs, f"{what}: FlopCounterMode {counted:,} FLOPs != 2 x {macs:,} conv+FC MACs"


def test_adapters_match_flop_counter():
    """The framework adapters' hook-built specs (dsp_torch.flops, bip_torch.flops) on real modules,
    including BiP's CIFAR ResNet-18 (kuangliu layout, 1x1 shortcuts), which shared.archs does not list."""
    from bip_torch.flops import model_specs as bip_specs
    from bip_torch.models import ARCHS
    from dsp_torch.flops import model_specs as dsp_specs
    from dsp_torch.models import cifar_resnet

    # by hand at 32x32: stem 3*64*9*32^2 = 1,769,472; layer1 4 x 64*64*9*32^2 = 150,994,944; layers
    # 2-4 each C*2C*9*(s/2)^2 + 3 x 2C*2C*9*(s/2)^2 + the 1x1 shortcut C*2C*(s/2)^2 = 134,217,728;
    # FC 512*10: 555,422,720. At 8x8 (strides still valid: 8, 4, 2, 1) the convs cost 1/16 of that.
    bip18 = ARCHS["resnet18"]()
    convs_32 = 555_422_720 - 5120
    assert torch_flops(bip18, 8) == 2 * conv_fc_macs(bip_specs(bip18, 8)) == 2 * (convs_32 // 16 + 5120)
    dsp20 = cifar_resnet(20)
    assert torch_flops(dsp20, 32) == 2 * conv_fc_macs(dsp_specs(dsp20)) == 2 * 40_813_184


def test_packed_models_match_flop_counter():
    """Packed networks of a randomly pruned ResNet-8 (one block per stage, the projection shortcuts
    included): the MACs they execute (`packed_macs`, forward hooks on their convs, weight elements x
    output pixels) against FlopCounterMode, for our union packing, one grouped conv per layer
    (`groups` = 4: FlopCounterMode divides C_in by the groups) and the authors' branch form."""
    from dsp_torch.models.cifar_resnet import CifarResNet
    from dsp_torch.pack import PackOptions, pack, packed_macs
    from dsp_torch.pack_branches import pack_branches
    from dsp_torch.pack_grouped import GroupedOptions, pack_grouped
    from tests.dsp.test_pack import _randomly_pruned

    model = _randomly_pruned(CifarResNet(8))
    dense = torch_flops(CifarResNet(8), 32) // 2
    ours = pack(model, PackOptions(align=1))
    grouped, _ = pack_grouped(model, GroupedOptions(packing="grouped"))
    branches = pack_branches(model)
    assert any(m.groups == 4 for m in grouped.modules() if isinstance(m, torch.nn.Conv2d))
    for net in (ours, grouped, branches):
        assert torch_flops(net, 32) == 2 * packed_macs(net)
    # 40 % of each group's channels kept: far below the dense count
    assert packed_macs(branches) < packed_macs(ours) < 0.9 * dense


@pytest.mark.realdata
def test_released_branch_form_executes_the_kernel_count(checkpoint_root):
    """The authors' ResNet-20 g=4 in its branch form: FlopCounterMode = 2 x the kernel-granular
    conv+FC count of shared.flops (the masks' kept kernels, the dense stem, shortcuts and FC)."""
    from dsp_torch.flops import model_specs
    from dsp_torch.pack_branches import pack_branches
    from dsp_torch.released import convert_released

    path = checkpoint_root / "dsp" / "resnet20_g4.pt"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    model = convert_released(path).model
    kernel_count = conv_fc_macs(model_specs(model))
    assert torch_flops(pack_branches(model), 32) == 2 * kernel_count
    assert kernel_count < 0.45 * conv_fc_macs(archs.build("cifar-resnet20-B"))
