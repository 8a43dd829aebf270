"""`python -m dcp_tf.bench` (`make dcp-bench`): is the DCP-pruned model really faster on a CPU?

Times, side by side in one run (shared.bench: round-robin, warm, medians with spread), fp32 on the CPU,
at batch 128 and 1:
- dense: the unpruned network with BN folded where it can be (`dcp_tf.export` mode "dense");
- pocketflow-export: PocketFlow's transformation of the pruned model (a one-hot 1x1 conv "gather" before
  every pruned conv, producers unchanged), the structure users found slower than the dense model;
- ours: the physically slimmed export (producers lose the channels their consumers dropped);
each under tf.function, TFLite (XNNPACK) and onnxruntime (shared.tf_export). The headline is best pruned
over best dense. Default network: the paper variant's PreResNet-56 at eta = 0.5 (1.99x fewer FLOPs);
target 1.4x. `--dcp_variant pocketflow --resnet_size 20` times PocketFlow's ResNet-20 at 0.5 (its
residual-stream convs need a gather in any export). Weights are random: speed does not depend on them;
the masks are a uniform c - floor(eta c) per pruned conv, as DCP leaves them. This machine may be shared:
the load is printed with every table, and a noisy result gets no verdict.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from shared import bench as sbench
from shared.errors import check_range, main_guard

TARGET = 1.4


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m dcp_tf.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--dcp_variant", choices=("paper", "pocketflow"), default="paper")
    p.add_argument("--resnet_size", type=int, default=56)
    p.add_argument("--dcp_prune_ratio", type=float, default=0.5)
    p.add_argument("--batches", type=int, nargs="+", default=[128, 1])
    p.add_argument("--runtimes", nargs="+", default=["tf.function", "tflite", "onnxruntime"])
    p.add_argument("--reps", type=int, default=9, help="timed rounds per runtime")
    p.add_argument("--threads", type=int, default=2, help="threads of every runtime")
    return p


def pruned_pair(variant: str, size: int, eta: float):
    import tensorflow as tf

    from dcp_tf.models import ResNet
    from shared import archs

    dense = ResNet(variant, "cifar10", size, seed=0)
    pruned = ResNet(variant, "cifar10", size, seed=0)
    pruned.copy_from(dense)
    rng = np.random.default_rng(0)
    for c in pruned.convs[1:]:
        if variant == "paper" and c.role != "prunable":
            continue
        m = np.zeros(c.c_in, np.float32)
        m[rng.permutation(c.c_in)[: archs.dcp_kept(c.c_in, eta)]] = 1
        c.mask.assign(m)
        c.kernel.assign(c.kernel * tf.reshape(c.mask, [1, 1, -1, 1]))
    return dense, pruned


@main_guard
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    check_range("--dcp_prune_ratio", args.dcp_prune_ratio, 0.0, 1.0, high_open=True)
    sbench.set_thread_env(args.threads)
    from shared import tf_export

    tf_export.set_threads(args.threads)
    from dcp_tf import export
    from dcp_tf import flops as dflops

    dense_model, pruned_model = pruned_pair(args.dcp_variant, args.resnet_size, args.dcp_prune_ratio)
    flops_ratio = dflops.count(dense_model).macs / dflops.count(pruned_model).macs
    modules = {
        "dense": export.build(dense_model, "dense"),
        "pocketflow-export": export.build(pruned_model, "pocketflow"),
        "ours": export.build(pruned_model, "slim"),
    }
    print(f"dcp_tf bench: {args.dcp_variant} variant, ResNet-{args.resnet_size} at eta {args.dcp_prune_ratio} "
          f"({flops_ratio:.2f}x fewer MACs), fp32, CPU, {args.threads} threads")  # fmt: skip
    example = np.random.default_rng(1).normal(size=(max(args.batches), 32, 32, 3)).astype(np.float32)
    fns = {}
    for name, module in modules.items():
        runners = tf_export.runtimes(lambda x, m=module: m(x), example[:1], module, names=args.runtimes,
                                     threads=args.threads, log=print)  # fmt: skip
        ref = module(example[:4]).numpy()
        for rt, fn in runners.items():
            diff = sbench.max_abs_diff(fn(example[:4]), ref)
            if diff > 1e-3 * max(1.0, float(np.abs(ref).max())):
                print(f"  {name}/{rt} differs from tf by {diff:.2e}: left out")
                continue
            fns[f"{name}/{rt}"] = fn
    masked_ref = pruned_model(example[:4], training=False).numpy()
    diff = sbench.max_abs_diff(modules["ours"](example[:4]).numpy(), masked_ref)
    print(f"  ours vs the masked model: max |diff| {diff:.1e}")
    dense_names = [n for n in fns if n.startswith("dense/")]
    results = {}
    for batch in args.batches:
        x = example[:batch]
        calls = {name: (lambda fn=fn, x=x: fn(x)) for name, fn in fns.items()}
        times = sbench.time_paired(calls, reps=args.reps, warmup=2)
        print()
        ref = sbench.best(times, dense_names)
        print(sbench.format_table(times, batch, reference=ref, title=f"batch {batch}", load=sbench.machine_load()))
        for label in ("ours", "pocketflow-export"):
            names = [n for n in fns if n.startswith(f"{label}/")]
            h = sbench.headline(times, dense_names, names)
            v = sbench.verdict(h.speedup, TARGET, h.paired, flops_ratio=flops_ratio)
            print(f"  {label}: best {h.best_pruned} vs best dense {h.best_dense}: {v}")
            results[(batch, label)] = h.speedup
    print("\nsummary: " + ", ".join(f"batch {b} {label} {s:.2f}x" for (b, label), s in results.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
