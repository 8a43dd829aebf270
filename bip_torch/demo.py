"""Demo stage of `make demo`: BiP and HYDRA, small, on the demo data.

    python -m bip_torch.demo [--data-dir DIR] --out DIR [--records DIR] [--threads N]

Pretrain resnet20s briefly, then prune it at k = 0.5 with BiP (trainer bilevel, bip.yml) and with HYDRA
as BiP runs it (trainer base, hydra.yml), unstructured and filter-wise, with the original train.py
commands; print sparsity and accuracy of each, then slim the filter-wise nets and time them against
the dense network (eager PyTorch, batch 64, median of 3 calls; `make bip-bench` for the paired
benchmark). One torch thread when the machine is busier than its cores (oversubscribed threads run many
times slower), else torch's default; `--threads` to choose. CIFAR-10 when a data folder is given
(option or $PRUNING_DATA_DIR), else the embedded digits set. The numbers are a smoke test of the
machinery, not the paper's (scripts/bip/ for those).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

from bip_torch.args import parse_args
from bip_torch.models import build
from bip_torch.slim import executed_macs, slim
from bip_torch.train import run
from shared.demo_data import demo_dataset
from shared.errors import check_count, main_guard


def _median_seconds(model, x, reps=3):
    with torch.inference_mode():
        model(x)
        times = []
        for _ in range(reps):
            t = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t)
    return statistics.median(times)


@main_guard
def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bip_torch.demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--data-dir", help="CIFAR-10 folder (default $PRUNING_DATA_DIR; else the digits set)")
    p.add_argument("--out", default="runs/demo/bip_torch", help="output folder")
    p.add_argument("--records", help="folder for the run records (default <out>/records)")
    p.add_argument("--k", type=float, default=0.5, help="kept fraction (default 0.5)")
    p.add_argument("--threads", type=int, help="torch threads (default: 1 on a busy machine, else torch's)")
    args = p.parse_args(argv)
    if args.threads is not None:
        check_count("--threads", args.threads)
        torch.set_num_threads(args.threads)
    elif os.getloadavg()[0] > (os.cpu_count() or 1):
        torch.set_num_threads(1)
    t0 = time.time()
    dataset = demo_dataset(args.data_dir)
    data = ["--dataset", "CIFAR10" if dataset == "cifar10" else "digits", "--result-dir", args.out]
    if dataset == "cifar10" and args.data_dir:
        data += ["--data-dir", args.data_dir]
    data += ["--test-limit", "200", "--records", args.records or str(Path(args.out) / "records")]
    print(f"BiP demo on {dataset}: resnet20s, pretrain, then BiP and HYDRA at k = {args.k}")
    pre = run(parse_args(["--configs", "configs/CIFAR10/pretrain.yml", "--epochs", "1", "--lr", "0.01",
                          "--lr-schedule", "constant", "--train-limit", "1024", "--batch-size", "32",
                          "--exp-name", "demo", *data]))  # fmt: skip
    src = pre["run_dir"] / "checkpoint" / "checkpoint.pth.tar"
    rows = []
    for cfg, method in (("bip", "BiP"), ("hydra", "HYDRA")):
        for lt in ("unstructured", "filter"):
            res = run(parse_args(["--configs", f"configs/CIFAR10/{cfg}.yml", "--layer-type", lt, "--k", str(args.k),
                                  "--source-net", str(src), "--epochs", "1", "--lr", "0.01", "--lr-schedule",
                                  "constant", "--train-limit", "128", "--batch-size", "64", "--exp-name", "demo",
                                  *data]))  # fmt: skip
            rows.append((method, lt, res))
    x = torch.randn(64, 3, 32, 32)
    dense = build("resnet20s", "dense", 10).eval()
    t_dense = _median_seconds(dense, x)
    print("\n== BiP demo summary ==")
    print(f"data: {dataset}; dense resnet20s (pretrained briefly): top-1 {pre['final']:.2f} %")
    for method, lt, res in rows:
        line = f"{method:5s} {lt:12s}: sparsity {100 * res['sparsity']:.2f} %, top-1 {res['final']:.2f} %"
        if lt == "filter":
            ck = torch.load(res["run_dir"] / "checkpoint" / "checkpoint.pth.tar", weights_only=True)
            model = build("resnet20s", lt, 10, args.k)
            model.load_state_dict(ck["state_dict"])
            model.eval()
            slimmed = slim(model)
            with torch.inference_mode():
                diff = (slimmed(x) - model(x)).abs().max().item()
            t = _median_seconds(slimmed, x)
            macs = executed_macs(dense) / executed_macs(slimmed)
            line += (
                f"; slimmed: {64 / t:.0f} img/s vs dense {64 / t_dense:.0f} img/s ({t_dense / t:.2f}x, "
                f"{macs:.2f}x fewer MACs, max |slimmed - masked| {diff:.1e})"
            )
        print(line)
    print(f"(unstructured masks give no dense-runtime speed-up: see `make bip-bench` for what CSR kernels gain; "
          f"total {time.time() - t0:.0f} s)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
