"""Demo stage of `make demo`: a short full-prec baseline, DCP (PocketFlow's variant) at 0.5 with tiny
iteration counts, the slimmed export and its timing; prints accuracy, kept channels and FLOPs, and
writes smoke run records.

    python -m dcp_tf.demo [--data-dir DIR] --out DIR [--records DIR]

Data: CIFAR-10 from --data-dir (or $PRUNING_DATA_DIR), else the embedded digits. Network: PocketFlow's
ResNet-8 (the smallest of its CIFAR ResNets), batch 32, BN decay 0.9 so that a few hundred steps give
usable moving statistics. About a minute on 2 CPU cores. Smoke numbers, never compared with the paper.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import time
from pathlib import Path

from shared.demo_data import demo_dataset
from shared.errors import main_guard

STEPS = 120


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m dcp_tf.demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--data-dir", default=None, help="folder holding CIFAR-10 (default: $PRUNING_DATA_DIR, else digits)")
    p.add_argument("--out", required=True, help="folder for the models (<out>/models, <out>/models_dcp*)")
    p.add_argument("--records", default=None, help="folder for the smoke run records (default <out>/records)")
    return p


def _run(flags: list[str]) -> dict:
    from dcp_tf import cli, runner

    args = cli.build_parser("cifar10").parse_args(flags)
    cli.validate(args)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        runner.main(args, "cifar10")
    return json.loads(buf.getvalue().strip().splitlines()[-1])


@main_guard
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    out = Path(args.out)
    records = args.records or str(out / "records")
    name = demo_dataset(args.data_dir)
    common = ["--dataset_name", name, "--resnet_size", "8", "--batch_size", "32", "--bn_decay", "0.9",
              "--summ_step", "0", "--records", records, "--save_path", str(out / "models/model.ckpt"),
              "--save_path_eval", str(out / "models_eval/model.ckpt")]  # fmt: skip
    if args.data_dir:
        common += ["--data_dir", args.data_dir]
    t0 = time.time()
    print(f"dcp_tf demo on {name}: PocketFlow ResNet-8, full-prec {STEPS} steps, then dis-chn-pruned at 0.5")
    from dcp_tf import checkpoints

    if not checkpoints.has_model(out / "models"):
        base = _run([*common, "--learner", "full-prec", "--nb_iters_train", str(STEPS)])
        print(f"full-prec: top-1 {base['top1']:.4f} after {base['steps']} steps, {base['macs']:,} MACs")
    dcp = _run([*common, "--learner", "dis-chn-pruned", "--dcp_nb_stages", "1", "--dcp_nb_iters_block", "2",
                "--dcp_nb_iters_layer", "0", "--nb_epochs_rat", "0.003", "--dcp_save_every_picks", "0",
                "--dcp_save_path", str(out / "models_dcp/model.ckpt"),
                "--dcp_save_path_eval", str(out / "models_dcp_eval/model.ckpt")])  # fmt: skip
    if "kept" not in dcp:
        print("(a finished DCP model is already in this --out)")
        return 0
    print(f"dis-chn-pruned (pocketflow): top-1 {dcp['top1']:.4f} (baseline {dcp['baseline_top1']:.4f}), "
          f"{dcp['macs']:,} MACs ({dcp['flops_reduction_x']:.2f}x fewer), {dcp['params']:,} params, "
          f"pr_msk {dcp['pr_msk']:.3f}, nonzero pruned weights {dcp['nonzero_in_pruned_slices']}")  # fmt: skip
    print("kept input channels: " + ", ".join(f"{k} {v[0]}/{v[1]}" for k, v in dcp["kept"].items()))

    import numpy as np

    from dcp_tf import export
    from shared import bench as sbench

    model, _ = checkpoints.load_model(out / "models_dcp_eval")
    dense, _ = checkpoints.load_model(out / "models")
    x = np.random.default_rng(0).normal(size=(32, 32, 32, 3)).astype(np.float32)
    mods = {"dense": export.build(dense, "dense"), "pocketflow-export": export.build(model, "pocketflow"),
            "ours": export.build(model, "slim")}  # fmt: skip
    times = sbench.time_paired({k: (lambda m=m: m(x).numpy()) for k, m in mods.items()}, reps=5, warmup=2)
    print(sbench.format_table(times, 32, reference="dense", title="tf.function, batch 32 (a tiny net: timing noise)",
                              load=sbench.machine_load()))  # fmt: skip
    print(f"(dcp_tf demo: {time.time() - t0:.0f} s; exports in {out / 'models_dcp_eval'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
