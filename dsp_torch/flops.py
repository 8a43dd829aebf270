"""FLOPs/params of DSP models: the adapter to `shared.flops`, and `python -m dsp_torch.flops`.

    python -m dsp_torch.flops --ckpt resnet56_g4.pt            # a released TorchScript model
    python -m dsp_torch.flops --ckpt runs/.../resnet56_P0g4c0.50.pkl

Two conventions are printed: `dsp-prunable` (the README's P.FLOPS / P.PARAMS: prunable 3x3 residual
convs only, at kernel granularity) and `conv-fc` (the whole network: every conv and the FC; params =
all trainable tensors of live units). Reductions are relative to the dense option-B model.
"""

from __future__ import annotations

import argparse
import sys

import torch
from torch import nn

from shared import archs
from shared import flops as sflops
from shared.errors import main_guard


@torch.no_grad()
def model_specs(model: nn.Module, image_size: int = 32) -> list:
    """Layer specs of a (possibly masked) model: pruned kernels and dead BN channels are not counted."""
    specs: list = []
    order: list[tuple[str, nn.Module]] = []
    shapes: dict[str, tuple[int, int]] = {}

    def hook(name):
        def fn(module, inputs, output):
            shapes[name] = tuple(output.shape[2:4]) if output.dim() == 4 else (1, 1)

        return fn

    handles = []
    for name, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear, nn.BatchNorm2d)):
            order.append((name, m))
            handles.append(m.register_forward_hook(hook(name)))
    was_training = model.training
    model.eval()
    try:
        model(torch.zeros(1, 3, image_size, image_size, device=next(model.parameters()).device))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    first_conv = next(n for n, m in order if isinstance(m, nn.Conv2d))
    for name, m in order:
        if isinstance(m, nn.Conv2d):
            role = "stem" if name == first_conv else ("shortcut" if "downsample" in name else "prunable")
            # Prunable convs count their kept kernel pairs; the others run dense in the packed model.
            pairs = int((m.weight.abs().sum(dim=(2, 3)) > 0).sum()) if role == "prunable" else None
            specs.append(
                sflops.Conv(
                    name,
                    m.in_channels,
                    m.out_channels,
                    m.kernel_size,
                    shapes[name],
                    groups=m.groups,
                    bias=m.bias is not None,
                    role=role,
                    kernel_pairs=pairs,
                )
            )
        elif isinstance(m, nn.BatchNorm2d):
            # BNs after prunable convs keep only their live channels (dead ones have gamma = beta = 0).
            after_prunable = specs and isinstance(specs[-1], sflops.Conv) and specs[-1].role == "prunable"
            live = int(((m.weight != 0) | (m.bias != 0)).sum()) if after_prunable else m.num_features
            specs.append(sflops.BatchNorm(name, live, shapes[name]))
        else:
            specs.append(sflops.Linear(name, m.in_features, m.out_features, bias=m.bias is not None))
    return specs


def dense_arch_name(arch: dict) -> str:
    if arch["family"] == "cifar":
        return f"cifar-resnet{arch['depth']}-B"
    return f"imagenet-{arch['name']}"


def reductions(model: nn.Module, arch: dict) -> dict:
    """Pruned % of FLOPs and params under both conventions, plus the kept counts."""
    size = 32 if arch["family"] == "cifar" else 224
    specs = model_specs(model, size)
    dense = archs.build(dense_arch_name(arch))
    out = {}
    for conv, tag in (("dsp-prunable", "dsp"), ("conv-fc", "whole")):
        kept, base = sflops.count(specs, conv), sflops.count(dense, conv)
        fl, pa = kept.reduction_pct(base)
        out.update(
            {
                f"{tag}_flops_reduction_pct": fl,
                f"{tag}_params_reduction_pct": pa,
                f"{tag}_macs": kept.macs,
                f"{tag}_params": kept.params,
                f"{tag}_dense_macs": base.macs,
                f"{tag}_dense_params": base.params,
            }
        )
    return out


def load_any(path: str):
    """(masked model, arch, description) from a released TorchScript model or one of our checkpoints."""
    from dsp_torch.checkpoints import load_checkpoint, model_from_checkpoint
    from dsp_torch.released import convert_released
    from shared.torch_train import is_torchscript_archive

    if is_torchscript_archive(path):
        converted = convert_released(path)
        return converted.model, converted.arch, f"released TorchScript (g={converted.groups})"
    ckpt = load_checkpoint(path)
    return model_from_checkpoint(ckpt, path), ckpt["arch"], f"{ckpt['stage']} checkpoint"


@main_guard
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dsp_torch.flops", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ckpt", required=True, help="released TorchScript model or a dsp_torch checkpoint")
    args = parser.parse_args(argv)
    model, arch, what = load_any(args.ckpt)
    r = reductions(model, arch)
    print(f"{args.ckpt}: {what}, {dense_arch_name(arch)}")
    print(
        f"  DSP convention (prunable 3x3 convs, kernel granular): P.FLOPS {r['dsp_flops_reduction_pct']:.2f} %  "
        f"P.PARAMS {r['dsp_params_reduction_pct']:.2f} %  ({r['dsp_macs']:,} / {r['dsp_dense_macs']:,} MACs, "
        f"{r['dsp_params']:,} / {r['dsp_dense_params']:,} weights)"
    )
    print(
        f"  whole network (conv+FC MACs, all trainable params): FLOPs -{r['whole_flops_reduction_pct']:.2f} %  "
        f"params -{r['whole_params_reduction_pct']:.2f} %  ({r['whole_macs']:,} / {r['whole_dense_macs']:,} MACs, "
        f"{r['whole_params']:,} / {r['whole_dense_params']:,} params)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
