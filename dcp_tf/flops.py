"""Counting for DCP: `python -m dcp_tf.flops` for a checkpoint, or for an architecture at a pruning rate.

Two kinds of numbers:
- the paper's "#Param / #FLOPs" (supplementary S4/S5): parameters and multiply-adds of conv + FC of the
  physically slimmed network, convention `conv-fc` (shared.flops); PocketFlow's own channel learner
  counts conv-only MACs (convention `conv-only`: ResNet-20 41,074,688, ResNet-18 1,826,406,400);
- PocketFlow's logged pruned-zero ratios: `pr_trn`, the fraction of exactly-zero entries among all
  trainable variables, and `pr_msk`, among the conv kernels.

    python -m dcp_tf.flops --resnet_size 56 --dcp_variant paper --dcp_prune_ratio 0.5
    python -m dcp_tf.flops --checkpoint ./models_dcp_eval
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from shared import archs
from shared import flops as sflops
from shared.errors import UserError, check_range, main_guard

CONVENTION = "conv-fc"


def kept_channels(conv) -> int:
    return int(round(float(np.sum(conv.mask.numpy()))))


def layer_specs(model) -> list[sflops.LayerSpec]:
    """The physically slimmed network of a masked model: every conv reads only its kept input channels;
    a block-internal conv (one whose output feeds only the next conv of its block) also computes only
    the channels its successor keeps, and the BN between shrinks with it."""
    if model.stem.output_hw is None:
        import tensorflow as tf

        hw = 32 if model.dataset == "cifar10" else 224
        model(tf.zeros([1, hw, hw, 3]))
    specs: list[sflops.LayerSpec] = [
        sflops.Conv("conv0", 3, model.stem.c_out, model.stem.size, model.stem.output_hw, role="stem")
    ]
    hw = model.stem.output_hw if model.dataset == "cifar10" else model.stem.output_hw // 2
    if model.dataset != "cifar10":
        specs.append(sflops.Pool("maxpool", model.stem.c_out, hw))
    for blk in model.blocks:
        specs.append(sflops.BatchNorm(blk.bns[0].label, blk.bns[0].channels, hw, role="block"))
        if blk.proj is not None:
            p = blk.proj
            specs.append(sflops.Conv(p.label, kept_channels(p), p.c_out, 1, p.output_hw, role="shortcut"))
        for j, c in enumerate(blk.main):
            if j:
                specs.append(sflops.BatchNorm(blk.bns[j].label, kept_channels(c), c.output_hw, role="prunable"))
            last = j == len(blk.main) - 1
            c_out = c.c_out if last else kept_channels(blk.main[j + 1])
            specs.append(sflops.Conv(c.label, kept_channels(c), c_out, c.size, c.output_hw, role=c.role))
        hw = blk.main[-1].output_hw
        specs.append(sflops.Add(f"{blk.label}.add", blk.main[-1].c_out, hw))
    c = model.final_bn.channels
    specs += [
        sflops.BatchNorm("final_bn", c, hw, role="head"),
        sflops.Pool("avgpool", c, 1),
        sflops.Linear("dense", c, model.num_classes),
    ]
    return specs


def count(model, convention: str = CONVENTION) -> sflops.Counts:
    return sflops.count(layer_specs(model), convention)


def zero_ratios(model) -> dict[str, float]:
    """PocketFlow's pr_trn (zeros among all trainable variables) and pr_msk (zeros among conv kernels)."""
    train = [v.numpy() for v in model.trainable_variables]
    kernels = [c.kernel.numpy() for c in model.convs]
    zeros = lambda arrs: sum(int(np.sum(a == 0)) for a in arrs) / sum(a.size for a in arrs)  # noqa: E731
    return {"pr_trn": zeros(train), "pr_msk": zeros(kernels)}


def arch_specs(variant: str, size: int, dataset: str, prune_ratio: float) -> list[sflops.LayerSpec]:
    """Specs of an architecture pruned uniformly at `prune_ratio` by DCP variant `variant`, slimmed."""
    if variant == "pocketflow":
        return archs.pocketflow_resnet(size, dataset, prune_ratio, slim=True)
    if dataset == "cifar10":
        return archs.dcp_preresnet(size, prune_ratio)
    return archs.dcp_imagenet_resnet(size, prune_ratio, num_classes=1000)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m dcp_tf.flops", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--checkpoint", default=None, help="a dcp_save_path_eval / save_path folder to count")
    p.add_argument("--resnet_size", type=int, default=20, help="ResNet depth (CIFAR 6n+2; ImageNet 18/34/50)")
    p.add_argument("--dataset", choices=("cifar10", "ilsvrc12"), default="cifar10")
    p.add_argument(
        "--dcp_variant",
        choices=("pocketflow", "paper"),
        default="pocketflow",
        help="pocketflow: PocketFlow's ResNet, every conv but the first pruned; paper: the paper's "
        "networks, block-internal convs pruned",
    )
    p.add_argument("--dcp_prune_ratio", type=float, default=0.5, help="eta: fraction of input channels removed")
    return p


@main_guard
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.checkpoint:
        from dcp_tf import checkpoints

        model, info = checkpoints.load_model(args.checkpoint)
        specs = layer_specs(model)
        out = {"checkpoint": args.checkpoint, **info, **zero_ratios(model)}
        base_arch = dict(model.arch)
        from dcp_tf.models import build

        base = sflops.count(layer_specs(build(base_arch)), CONVENTION)
    else:
        check_range("--dcp_prune_ratio", args.dcp_prune_ratio, 0.0, 1.0, high_open=True)
        if args.dcp_variant == "paper" and args.dataset == "ilsvrc12" and args.resnet_size not in (18, 34, 50, 101):
            raise UserError(f"the paper's ImageNet ResNet has depth 18, 34, 50 or 101, got {args.resnet_size}")
        specs = arch_specs(args.dcp_variant, args.resnet_size, args.dataset, args.dcp_prune_ratio)
        base = sflops.count(arch_specs(args.dcp_variant, args.resnet_size, args.dataset, 0.0), CONVENTION)
        out = {
            "dcp_variant": args.dcp_variant,
            "resnet_size": args.resnet_size,
            "dataset": args.dataset,
            "dcp_prune_ratio": args.dcp_prune_ratio,
        }
    c = sflops.count(specs, CONVENTION)
    conv_only = sflops.count(specs, "conv-only")
    out.update(
        convention=CONVENTION,
        params=c.params,
        macs=c.macs,
        conv_macs=conv_only.macs,
        params_reduction_x=base.params / c.params,
        flops_reduction_x=base.macs / c.macs,
        convs=sum(isinstance(s, sflops.Conv) for s in specs),
    )
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
