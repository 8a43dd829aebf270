"""Inference speed of the dense and the DSP-packed ResNet under every CPU runtime at hand, side by side.

    python -m dsp_torch.bench [--ckpt resnet56_g4.pt] [--batch-sizes 128 1] [--reps 9] [--threads 1]

Contenders (fp32, eval mode, no autograd), for a released model (--ckpt, or
$PRUNING_CHECKPOINT_DIR/dsp/resnet56_g4.pt, else .../resnet20_g4.pt):

- dense <runtime>: the option-B ResNet of the same depth, unpruned, under each runtime of
  `shared.torch_export.runtimes` (eager, scripted = traced + frozen TorchScript, onnxruntime, OpenVINO;
  --runtimes chooses), and `dense packed-scripted`: the dense network given our packer's treatment (BN
  folded, channels_last, scripted and frozen). The best of these is the baseline of the headline;
- authors' packed: the released TorchScript file as is;
- ours <runtime>: the released model converted and packed by `dsp_torch.pack`, under each runtime.

Timing (`shared.bench`): every contender of a batch size is timed in the same rounds, in an order that
rotates from round to round, each timed call after an untimed one (warm, as in steady serving), after
warm-up calls; the table gives medians, the spread (IQR / median, min-max) and the machine load. The
headline is best packed (ours) / best dense, with a verdict against --target only when the spread of
the paired ratio is narrow, and a speed-up above the ratio of executed MACs flagged as implausible.
On a machine that other jobs share the numbers are noisy: read the load line.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

from dsp_torch.dsp_module import attach_prune_buffers
from dsp_torch.models import cifar_resnet
from dsp_torch.pack import PackOptions, pack, packed_macs, to_torchscript
from dsp_torch.released import convert_released, load_released
from shared import bench, torch_export
from shared.errors import UserError, main_guard
from shared.paths import checkpoint_root

AUTHORS, DENSE_PACKED = "authors' packed", "dense packed-scripted"
DEFAULT_CKPTS = ("resnet56_g4.pt", "resnet20_g4.pt")


def build_models(ckpt: str, align: int) -> tuple[dict, dict]:
    """({'dense', 'dense packed', 'authors', 'ours'}: model, info) for the released model `ckpt`."""
    converted = convert_released(ckpt)
    depth = converted.arch["depth"]
    torch.manual_seed(0)
    dense = cifar_resnet(depth).eval()
    dense_masked = cifar_resnet(depth).eval()
    dense_masked.load_state_dict(dense.state_dict())
    attach_prune_buffers(dense_masked, 1)  # all-ones masks: the packer keeps everything
    opts = PackOptions(align=align)
    models = {
        "dense": dense,
        "dense packed": pack(dense_masked, opts),
        "authors": load_released(ckpt),
        "ours": pack(converted.model, opts),
    }
    info = {
        "depth": depth,
        "groups": converted.groups,
        "ours_macs": packed_macs(models["ours"]),
        "dense_macs": packed_macs(models["dense packed"]),
    }
    return models, info


def build_contenders(models: dict, batch: int, runtimes, threads: int, workdir: Path) -> tuple[dict, dict]:
    """({name: callable(images) -> logits}, {name: max |logit difference| / max |logit| against its eager
    model}) for one batch size (a model whose ONNX export pins the batch is exported at this one)."""
    example = torch.randn(batch, 3, 32, 32)
    said = set()

    def say(line: str) -> None:
        if line not in said:
            said.add(line)
            print(f"  {line}")

    fns = {}
    for kind in ("dense", "ours"):
        made = torch_export.runtimes(
            models[kind], example, names=runtimes, threads=threads, workdir=workdir / f"{kind}-{batch}", log=say
        )
        fns.update({f"{kind} {k}": f for k, f in made.items()})
    fns[DENSE_PACKED] = torch_export.torch_runner(to_torchscript(models["dense packed"]))
    fns[AUTHORS] = torch_export.torch_runner(models["authors"])
    with torch.inference_mode():
        ref = {kind: models[kind](example).numpy() for kind in ("dense", "ours")}
    # relative to the largest logit: the untrained dense network's logits reach the thousands
    diffs = {}
    for name, fn in fns.items():
        if name != AUTHORS:
            expected = ref["ours" if name.startswith("ours") else "dense"]
            diffs[name] = bench.max_abs_diff(fn(example.numpy()), expected) / float(abs(expected).max())
    return fns, diffs


def default_ckpt() -> str:
    root = checkpoint_root()
    if root is None:
        raise UserError("give --ckpt (a released model such as resnet56_g4.pt) or set PRUNING_CHECKPOINT_DIR")
    for name in DEFAULT_CKPTS:
        if (root / "dsp" / name).is_file():
            return str(root / "dsp" / name)
    raise UserError(f"no released model ({' or '.join(DEFAULT_CKPTS)}) in {root / 'dsp'}; give --ckpt")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m dsp_torch.bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--ckpt", help="released packed model (default $PRUNING_CHECKPOINT_DIR/dsp/resnet56_g4.pt)")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[128, 1], help="batch sizes to time")
    p.add_argument("--reps", type=int, default=9, help="timed rounds per batch size (every contender once each)")
    p.add_argument("--warmup", type=int, default=2, help="untimed calls per contender before the rounds")
    p.add_argument("--threads", type=int, default=1, help="threads of every runtime (torch intra-op too)")
    p.add_argument(
        "--runtimes",
        nargs="+",
        default=list(torch_export.DEFAULT_RUNTIMES),
        choices=torch_export.TORCH_RUNTIMES,
        help="runtimes for the dense and our packed model",
    )
    p.add_argument("--align", type=int, default=8, help="packing width multiple (default 8)")
    p.add_argument("--target", type=float, default=1.5, help="target of best packed / best dense")
    return p


@main_guard
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if min(args.batch_sizes) < 1 or args.reps < 1 or args.warmup < 0 or args.threads < 1 or args.align < 1:
        raise UserError("--batch-sizes, --reps, --threads and --align must be >= 1 and --warmup >= 0")
    ckpt = args.ckpt or default_ckpt()
    if not Path(ckpt).is_file():
        raise UserError(f"released model {ckpt} does not exist")
    torch.set_num_threads(args.threads)
    models, info = build_models(ckpt, args.align)
    print(
        f"{Path(ckpt).name}: ResNet-{info['depth']} g={info['groups']}; CPU, {args.threads} thread(s), "
        f"torch {torch.__version__}, fp32"
    )
    macs_ratio = info["dense_macs"] / info["ours_macs"]
    print(
        f"executed MACs: ours packed {info['ours_macs']:,} vs dense {info['dense_macs']:,} ({macs_ratio:.2f}x fewer); "
        "DSP-convention kernels: 65% fewer for g=4"
    )
    workdir = Path(tempfile.mkdtemp(prefix="dsp-bench-"))
    summary = []
    for batch in args.batch_sizes:
        fns, diffs = build_contenders(models, batch, args.runtimes, args.threads, workdir)
        worst = max(diffs, key=diffs.get)
        print(
            f"batch {batch}: every runtime within {diffs[worst]:.1e} x max |logit| of its eager model "
            f"(largest: {worst})"
        )
        x = torch.randn(batch, 3, 32, 32).numpy()
        times = bench.time_paired(
            {k: (lambda f=f, x=x: f(x)) for k, f in fns.items()}, reps=args.reps, warmup=args.warmup
        )
        print(bench.format_table(times, batch, reference="dense eager", title=f"\nbatch {batch}:"))
        head = bench.headline(
            times, [k for k in fns if k.startswith("dense")], [k for k in fns if k.startswith("ours")]
        )
        v = bench.verdict(head.speedup, args.target, head.paired, flops_ratio=macs_ratio)
        authors = bench.paired_ratio(times[AUTHORS], times[head.best_pruned]).median
        summary.append(
            f"batch {batch}: best packed ({head.best_pruned}) / best dense ({head.best_dense}) {head.speedup:.2f}x; "
            f"ours vs authors' packed {authors:.2f}x; target {args.target}x: {v}"
        )
    print(f"\nratios ({bench.describe_load()}):")
    for line in summary:
        print("  " + line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
