"""Counting for BiP models: `python -m bip_torch.flops --arch A [--ckpt C]`.

    python -m bip_torch.flops --arch resnet20s
    python -m bip_torch.flops --arch resnet18 --ckpt trained_models/.../checkpoint/checkpoint.pth.tar

Prints the prunable weights (conv + FC weights: BiP's sparsity denominator, BN and biases excluded),
all parameters, the global and per-layer sparsity of the checkpoint's masks (as the forward pass builds
them: one global top-k for unstructured, per layer for filter / channel; not the original's per-tensor
`subnet_to_dense`), and the MACs: dense (`shared.flops` conventions `weights-only` and `conv-fc`),
effective (kept weights x output positions) and, for structured masks, what the slimmed network
executes. The layer type, k and classes come from the checkpoint when it records them.
"""

from __future__ import annotations

import argparse
import sys

import torch
from torch import nn

from bip_torch import layers as L
from bip_torch.models import ARCHS, build
from bip_torch.slim import effective_macs, executed_macs, slim
from shared import flops as sflops
from shared.errors import UserError, main_guard
from shared.torch_train import load_weights


@torch.no_grad()
def model_specs(model: nn.Module, image_size: int = 32) -> list:
    """Dense layer specs (conv, linear, BN) of a model, for `shared.flops.count`."""
    specs, handles = [], []

    def hook(name):
        def fn(m, inputs, out):
            if isinstance(m, nn.Conv2d):
                specs.append(sflops.Conv(name, m.in_channels, m.out_channels, m.kernel_size, tuple(out.shape[2:]),
                                         m.groups, m.bias is not None))  # fmt: skip
            elif isinstance(m, nn.Linear):
                specs.append(sflops.Linear(name, m.in_features, m.out_features, m.bias is not None))
            else:
                specs.append(sflops.BatchNorm(name, m.num_features, tuple(out.shape[2:])))

        return fn

    for name, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear, nn.BatchNorm2d)):
            handles.append(m.register_forward_hook(hook(name)))
    was = model.training
    model.eval()
    model(torch.zeros(1, 3, image_size, image_size))
    model.train(was)
    for h in handles:
        h.remove()
    return specs


def report(model: nn.Module, image_size: int = 32) -> dict:
    rep = L.sparsity_report(model)
    dense = {c: sflops.count(model_specs(model, image_size), c) for c in ("weights-only", "conv-fc")}
    out = {
        "prunable_weights": rep["total"],
        "kept_weights": rep["kept"],
        "all_params": sum(p.numel() for n, p in model.named_parameters() if not n.endswith("popup_scores")),
        "sparsity_pct": 100 * rep["sparsity"],
        "dense_macs": dense["weights-only"].macs,
        "effective_macs": effective_macs(model, image_size),
        "conv_fc_params": dense["conv-fc"].params,
        "layers": rep["layers"],
    }
    types = {m.layer_type for _, m in L.masked_modules(model)}
    if types & {"filter", "channel"}:
        out["slimmed_macs"] = executed_macs(slim(model, image_size), image_size)
    return out


@main_guard
def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bip_torch.flops", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--arch", required=True, help=f"one of {', '.join(ARCHS)}")
    p.add_argument("--ckpt", help="a checkpoint.pth.tar (or a raw state dict) to count the masks of")
    p.add_argument("--layer-type", default=None, help="default: the checkpoint's, else unstructured")
    p.add_argument("--k", type=float, default=None, help="default: the checkpoint's, else 1.0")
    p.add_argument("--num-classes", type=int, default=None, help="default: the checkpoint's, else 10")
    p.add_argument("--image-size", type=int, default=None, help="default: 32 (64 for ResNet18/34/50)")
    p.add_argument("--per-layer", action="store_true", help="print every layer's kept / total")
    args = p.parse_args(argv)
    ckpt = load_weights(args.ckpt, "--ckpt checkpoint") if args.ckpt else {}
    if args.ckpt and not isinstance(ckpt, dict):
        raise UserError(f"{args.ckpt}: not a checkpoint")
    sd = ckpt.get("state_dict", ckpt) if ckpt else None
    layer_type = args.layer_type or ckpt.get("layer_type") or "unstructured"
    k = args.k if args.k is not None else float(ckpt.get("k", 1.0))
    classes = args.num_classes or ckpt.get("num_classes") or 10
    if layer_type == "dense":
        layer_type = "unstructured"  # k = 1: everything kept
    model = build(args.arch, layer_type, classes, k)
    if (ckpt.get("variant") or {}).get("hydra") == "original":
        model._forward_pre_hooks.clear()  # --hydra-original: every layer ranks its own scores
    if sd is not None:
        missing, unexpected = model.load_state_dict(sd, strict=False)
        bad = [m for m in missing if not m.endswith("popup_scores")] + list(unexpected)
        if bad:
            raise UserError(f"{args.ckpt} does not fit --arch {args.arch}: {', '.join(bad[:4])}")
        if any(m.endswith("popup_scores") for m in missing):
            L.copy_scores_from_weights(model)  # a dense checkpoint: magnitude scores (k = 1 keeps all)
    size = args.image_size or (64 if args.arch[0] == "R" else 32)
    r = report(model, size)
    print(f"{args.arch} ({classes} classes, {layer_type}, k = {k}), {size}x{size} input")
    print(f"prunable weights (conv + FC): {r['prunable_weights']:,}; kept {r['kept_weights']:,}")
    print(f"all parameters: {r['all_params']:,} (conv-fc convention: {r['conv_fc_params']:,})")
    print(f"global sparsity: {r['sparsity_pct']:.4f} % (weights-only convention)")
    print(f"MACs: dense {r['dense_macs']:,} (weights-only), effective {r['effective_macs']:,} "
          f"({100 * (1 - r['effective_macs'] / r['dense_macs']):.2f} % fewer)")  # fmt: skip
    if "slimmed_macs" in r:
        print(f"slimmed network executes {r['slimmed_macs']:,} MACs ({r['dense_macs'] / r['slimmed_macs']:.2f}x fewer)")
    if args.per_layer:
        for name, layer in r["layers"].items():
            print(
                f"  {name:32s} kept {layer['kept']:>9,} / {layer['total']:>9,}  "
                f"sparsity {100 * layer['sparsity']:6.2f} %"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
