"""Adapter: an EKG model -> `shared.flops` layer specs, counted by the shared code.

Every layer reports its spec from its live channels (`ResNet.specs`), so the same counter measures the
dense network, a masked candidate during the search and the slimmed network. Two conventions:

- `ekg-code` (EKG's `check_complexity`, the one `search_target_rate` is measured with): "FLOPs" = conv
  MACs + 2*H*W*C per BN + FC MACs; params = kernels + FC bias + BN gamma, beta, moving mean and variance.
  ResNet-56: 126.84 M / 0.860 M; ResNet-50: 4.111 G / 25.61 M.
- `conv-fc` (the literature's): conv + FC MACs, trainable params. ResNet-56: 125.75 M / 0.856 M.

    python -m ekg_tf2.flops --arch ResNet-56 [--dataset CIFAR10] [--trained_param FILE]
"""

from __future__ import annotations

import argparse
import sys

from ekg_tf2.models import ResNet, build_model, check_arch
from shared import flops
from shared.errors import main_guard

CONVENTION = "ekg-code"
LITERATURE = "conv-fc"


def count(model: ResNet, convention: str = CONVENTION, kept: dict | None = None) -> flops.Counts:
    return flops.count(model.specs(kept), convention)


def full_counts(arch: str, dataset: str, convention: str = CONVENTION) -> flops.Counts:
    """Counts of the unpruned network."""
    return count(build_model(arch, dataset), convention)


@main_guard
def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m ekg_tf2.flops", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--arch", default="ResNet-56")
    p.add_argument("--dataset", default=None, help="default: CIFAR10 for CIFAR nets, ILSVRC for ImageNet nets")
    p.add_argument("--trained_param", default=None, help="count this (slimmed) params pkl instead of the dense net")
    args = p.parse_args(argv)
    dataset = args.dataset or ("ILSVRC" if args.arch in ("ResNet-18", "ResNet-34", "ResNet-50") else "CIFAR10")
    check_arch(args.arch, dataset)
    if args.trained_param:
        from ekg_tf2.params import load_model

        model = load_model(args.arch, dataset, args.trained_param)
    else:
        model = build_model(args.arch, dataset)
    base = full_counts(args.arch, dataset) if args.trained_param else None
    for conv in (CONVENTION, LITERATURE):
        c = count(model, conv)
        line = f"{args.arch} {dataset} [{conv}]: FLOPs {c.macs / 1e6:.2f} M, params {c.params / 1e6:.3f} M"
        if base is not None:
            b = full_counts(args.arch, dataset, conv)
            line += (
                f" (kept {100 * c.macs / b.macs:.2f} % of the FLOPs, {100 * c.params / b.params:.2f} % of the params)"
            )
        print(line)
    print(f"channel groups (gates): {len(model.widths)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
