"""Evaluate a params pkl (the original `test.py`): top-1, top-5, params and FLOPs.

    python -m ekg_tf2.test --arch ResNet-56 --dataset CIFAR10 --trained_param FILE --data_dir DIR

The original evaluates with `training=True`, i.e. BN batch statistics of each 256-image batch; the
original train.py reports moving-average BN. Both are offered (`--bn`); each printed line names its
mode. Params/FLOPs are EKG's own counter (`ekg-code`: BN moving statistics in the params, 2*H*W*C
per BN in the FLOPs), as the original prints them, in M.
"""

from __future__ import annotations

import argparse
import sys

from ekg_tf2 import cli, data, params
from ekg_tf2.flops import count
from ekg_tf2.train import BN_MODES, evaluate_split
from shared.errors import main_guard


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ekg_tf2.test", description=__doc__, formatter_class=cli.HelpFormatter)
    p.add_argument("--gpu_id", default=None, help="comma-separated GPU ids")
    p.add_argument("--arch", default="ResNet-56")
    p.add_argument("--dataset", default="CIFAR10")
    p.add_argument("--trained_param", required=True, help="params pkl (trained_params.pkl, slimmed_params.pkl, ...)")
    p.add_argument("--data_dir", default=None, help="dataset folder (default $PRUNING_DATA_DIR)")
    p.add_argument("--val_batch_size", type=int, default=256, help="evaluation batch (sets the batch statistics)")
    p.add_argument(
        "--bn",
        default="both",
        choices=(*BN_MODES, "both"),
        help="BN at evaluation: batch-stats (the original test.py), moving-average (the original train.py), both",
    )
    p.add_argument("--records", default=None, metavar="DIR", help="write a released-model run record under DIR/ekg/")
    p.add_argument("--test_limit", type=int, default=None, help="evaluate on the first N test images (smoke runs)")
    p.add_argument("--image_size", type=int, default=224, help="ILSVRC crop size (smoke runs)")
    return p


def run(args, log=print) -> dict:
    args.accum, args.compile = 1, False  # check_common reads them
    cli.check_common(args)
    model = params.load_model(args.arch, args.dataset, args.trained_param)
    if args.dataset == "ILSVRC":  # the val split, preprocessed as ekg_tf2.imagenet (recipe inferred)
        from ekg_tf2 import imagenet

        _, test = imagenet.load_splits(args.data_dir, args.image_size, None, args.test_limit)
    else:
        test = data.limited(data.load_split(args.dataset, "test", args.data_dir), args.test_limit)
    modes = BN_MODES[::-1] if args.bn == "both" else (args.bn,)
    c = count(model)
    out = {"params": c.params, "flops": c.macs, "n": len(test)}
    for mode in modes:
        ev = evaluate_split(model, test, args.dataset, mode, args.val_batch_size)
        out[mode] = ev
        log(
            f"{args.arch} {args.dataset} test ({len(test)} images, BN {mode}): top-1 {ev['top1']:.2f} %, "
            f"top-5 {ev['top5']:.2f} %"
        )
    log(f"params: {c.params / 1e6:.4f} M, FLOPs: {c.macs / 1e6:.4f} M (EKG's counter)")
    if args.records:
        from ekg_tf2 import records

        records.write_test_record(args, out, test, log)
    return out


@main_guard
def main(argv=None) -> int:
    run(build_parser().parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
