"""Inference speed of the dense and the DSP-packed ResNet under every CPU runtime at hand, side by side.

    python -m dsp_torch.bench [--ckpt resnet56_g4.pt] [--batch-sizes 128 1] [--reps 9] [--threads 1]
                              [--packings ours grouped merge2 merge3 auto]

Contenders (fp32, eval mode, no autograd), for a released model (--ckpt, or
$PRUNING_CHECKPOINT_DIR/dsp/resnet56_g4.pt, else .../resnet20_g4.pt):

- dense <runtime>: the option-B ResNet of the same depth, unpruned, under each runtime of
  `shared.torch_export.runtimes` (eager, scripted = traced + frozen TorchScript, onnxruntime, OpenVINO;
  --runtimes chooses), and `dense packed-scripted`: the dense network given our packer's treatment (BN
  folded, channels_last, scripted and frozen). The best of these is the baseline of the headline;
- authors' packed: the released TorchScript file as is;
- <packing> <runtime>: the released model converted and packed under each runtime, for each of
  --packings: `ours` (`dsp_torch.pack`: one conv per layer over the groups' union, widths rounded to
  --align) and the group-aware `union`, `grouped`, `merge2`, `merge3`, `auto` (`dsp_torch.pack_grouped`;
  auto times its per-conv choice at each batch size). Each packing's executed MACs are printed next to
  the ideal (DSP's kernel count, what the authors' branches execute) and the dense count.

Timing (`shared.bench`): every contender of a batch size is timed in the same rounds, in an order that
rotates from round to round, each timed call after an untimed one (warm, as in steady serving), after
warm-up calls; the table gives medians, the spread (IQR / median, min-max) and the machine load. The
headline is best packed (any packing, any runtime) / best dense, with a verdict against --target only when the spread of
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
from dsp_torch.flops import reductions
from dsp_torch.models import cifar_resnet
from dsp_torch.pack import PackOptions, pack, packed_macs, to_torchscript
from dsp_torch.pack_grouped import PACKINGS, GroupedOptions, pack_grouped
from dsp_torch.released import convert_released, load_released
from shared import bench, torch_export
from shared.errors import UserError, main_guard
from shared.paths import checkpoint_root

AUTHORS, DENSE_PACKED = "authors' packed", "dense packed-scripted"
DEFAULT_CKPTS = ("resnet56_g4.pt", "resnet20_g4.pt")
ALL_PACKINGS = ("ours", *PACKINGS)
DEFAULT_PACKINGS = ("ours", "grouped", "merge2", "merge3")


def pack_as(model, packing: str, align: int, batch: int):
    """The packed eager module of `model` under `packing` (auto: choices timed on `batch` images)."""
    if packing == "ours":
        return pack(model, PackOptions(align=align))
    return pack_grouped(model, GroupedOptions(packing=packing, batch=batch))[0]


def build_models(ckpt: str, align: int, packings=("ours",)) -> tuple[dict, dict]:
    """({'dense', 'dense packed', 'authors', 'masked', <packing>...}: model, info) for the released model
    `ckpt` (auto is packed per batch size, in build_contenders)."""
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
        "masked": converted.model,
    }
    for packing in packings:
        if packing != "auto":
            models[packing] = pack_as(converted.model, packing, align, 1)
    info = {
        "depth": depth,
        "groups": converted.groups,
        "macs": {k: packed_macs(models[k]) for k in packings if k != "auto"},
        "ideal_macs": reductions(converted.model, converted.arch)["whole_macs"],
        "dense_macs": packed_macs(models["dense packed"]),
    }
    return models, info


def build_contenders(
    models: dict, batch: int, runtimes, threads: int, workdir: Path, packings=("ours",), align: int = 8
) -> tuple[dict, dict, dict]:
    """({name: callable(images) -> logits}, {name: max |logit difference| / max |logit| against the
    dense eager or the masked model}, {packing: executed MACs at this batch}) for one batch size (a
    model whose ONNX export pins the batch is exported at this one; auto is packed here)."""
    example = torch.randn(batch, 3, 32, 32)
    models = dict(models)
    if "auto" in packings:
        models["auto"] = pack_as(models["masked"], "auto", align, batch)
    said = set()

    def say(line: str) -> None:
        if line not in said:
            said.add(line)
            print(f"  {line}")

    # scripted first: once torch.export / tracing has run over the group-aware modules, scripting the
    # PackedNet class fails in torch 2.14 (its annotations are no longer resolved)
    fns = {DENSE_PACKED: torch_export.torch_runner(to_torchscript(models["dense packed"]))}
    source = {DENSE_PACKED: "dense"}
    for kind in ("dense", *packings):
        made = torch_export.runtimes(
            models[kind], example, names=runtimes, threads=threads, workdir=workdir / f"{kind}-{batch}", log=say
        )
        fns.update({f"{kind} {k}": f for k, f in made.items()})
        source.update({f"{kind} {k}": "dense" if kind == "dense" else "masked" for k in made})
    fns[AUTHORS] = torch_export.torch_runner(models["authors"])
    with torch.inference_mode():
        ref = {kind: models[kind](example).numpy() for kind in ("dense", "masked")}
    # relative to the largest logit: the untrained dense network's logits reach the thousands
    diffs = {}
    for name, fn in fns.items():
        if name != AUTHORS:
            expected = ref[source[name]]
            diffs[name] = bench.max_abs_diff(fn(example.numpy()), expected) / float(abs(expected).max())
    macs = {k: packed_macs(models[k]) for k in packings}
    return fns, diffs, macs


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
    p.add_argument(
        "--batch-sizes",
        type=int,
        nargs="+",
        default=[128, 1],
        metavar="N",
        help="batch sizes to time, each a separate table (default: 128 1; every runtime is exported and "
        "warmed up for each size)",
    )
    p.add_argument("--reps", type=int, default=9, help="timed rounds per batch size (every contender once each)")
    p.add_argument(
        "--warmup",
        type=int,
        default=2,
        help="untimed calls of every contender before the timed rounds, for first-call costs (allocation, "
        "kernel selection, compilation); 0 to skip (default 2)",
    )
    p.add_argument("--threads", type=int, default=1, help="threads of every runtime (torch intra-op too)")
    p.add_argument(
        "--runtimes",
        nargs="+",
        default=list(torch_export.DEFAULT_RUNTIMES),
        choices=torch_export.TORCH_RUNTIMES,
        help="runtimes for the dense and the packed models",
    )
    p.add_argument(
        "--packings",
        nargs="+",
        default=list(DEFAULT_PACKINGS),
        choices=ALL_PACKINGS,
        help="packings of the pruned model to time (default: " + " ".join(DEFAULT_PACKINGS) + "; auto times "
        "its per-conv choice at each batch size, which takes a while)",
    )
    p.add_argument("--align", type=int, default=8, help="width multiple of the `ours` packing (default 8)")
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
    packings = list(dict.fromkeys(args.packings))
    models, info = build_models(ckpt, args.align, packings)
    print(
        f"{Path(ckpt).name}: ResNet-{info['depth']} g={info['groups']}; CPU, {args.threads} thread(s), "
        f"torch {torch.__version__}, fp32"
    )
    dense_macs, ideal = info["dense_macs"], info["ideal_macs"]
    print(
        f"executed MACs (convs + FC): dense {dense_macs:,}; ideal (DSP's kernel count, the authors' branches) "
        f"{ideal:,} ({dense_macs / ideal:.2f}x fewer)"
    )
    for k, m in info["macs"].items():
        print(f"  packed {k:8s} {m:,} ({m / ideal:.2f}x the ideal, {dense_macs / m:.2f}x fewer than dense)")
    workdir = Path(tempfile.mkdtemp(prefix="dsp-bench-"))
    summary = []
    for batch in args.batch_sizes:
        fns, diffs, macs = build_contenders(models, batch, args.runtimes, args.threads, workdir, packings, args.align)
        if "auto" in macs:
            print(f"  packed auto (batch {batch}) {macs['auto']:,} ({macs['auto'] / ideal:.2f}x the ideal)")
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
        dense_names = [k for k in fns if k.startswith("dense")]
        packed_names = [k for k in fns if k.split()[0] in packings]
        head = bench.headline(times, dense_names, packed_names)
        best_packing = head.best_pruned.split()[0]
        v = bench.verdict(head.speedup, args.target, head.paired, flops_ratio=dense_macs / macs[best_packing])
        authors = bench.paired_ratio(times[AUTHORS], times[head.best_pruned]).median
        p = head.paired
        summary.append(
            f"batch {batch}: best packed ({head.best_pruned}, {macs[best_packing] / 1e6:.1f}M MACs) / best dense "
            f"({head.best_dense}) {head.speedup:.2f}x (paired {p.median:.2f}x, IQR {p.q1:.2f}-{p.q3:.2f}); "
            f"vs authors' packed {authors:.2f}x; target {args.target}x: {v}"
        )
        for k in packings:  # each packing's best runtime against the best dense
            mine = [n for n in packed_names if n.split()[0] == k]
            if mine:
                h = bench.headline(times, dense_names, mine)
                summary.append(f"  {k:8s} best {h.best_pruned:24s} {h.speedup:.2f}x best dense")
    print(f"\nratios ({bench.describe_load()}):")
    for line in summary:
        print("  " + line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
