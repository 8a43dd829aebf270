"""Speed of BiP's pruned networks on this machine, measured side by side (`make bip-bench`).

    python -m bip_torch.bench [--batch-sizes 128 1] [--reps 5] [--threads 1] [--parts structured unstructured epoch]
                              [--archs resnet18 vgg16_bn ...]

1. structured: CIFAR ResNet-18 (`resnet18`) and VGG-16 (`vgg16_bn`; `--archs` picks any of BiP's models,
   e.g. wrn_28_4, resnet50) with filter-wise masks at k = 0.5, physically slimmed
   (`bip_torch.slim`), against the dense network, each under eager PyTorch, frozen TorchScript,
   onnxruntime and OpenVINO (`shared.torch_export.runtimes`), fp32, CPU, 32 x 32 inputs (64 x 64, 200
   classes, for the TinyImageNet-style ResNet18/34/50). Headline: best slimmed / best dense, judged
   against 0.8 x the ratio of executed MACs (dense / slimmed).
2. unstructured: the ResNet-18 with global unstructured masks at 90 % and 98.6 % sparsity. A
   dense runtime gains nothing from zeros; what a CPU can gain is measured with a sparse-kernel path in
   PyTorch itself (each conv as im2col + a CSR sparse x dense product, `SparseConv2d`), against the
   dense model's best runtime. The masks are random-score masks: speed depends on the sparsity
   pattern's density, not on which weights survive.
3. epoch: the cost of one training epoch on the same data (resnet20s, digits images shaped like CIFAR,
   --epoch-images of them): dense training (pretrain), BiP's bilevel epoch (4 forwards, 3 backwards per
   step), HYDRA's prune epoch, and an IMP retraining epoch (fixed mask). BiP's claim "as efficient as
   first-order" is the ratio BiP / dense epoch; its "2-7x faster than IMP" is the cost of IMP's rounds
   (each a full retraining) over one BiP run, computed from these epoch costs with the epoch counts
   given by --bip-epochs / --imp-epochs-per-round (assumed equal: the paper's IMP recipe is unverified).

Timing (`shared.bench`): contenders of one batch size are timed in the same rounds, in rotating order,
each timed call after an untimed one, after warm-up calls; medians with spread (IQR / median) and the
machine load are printed. On a machine other jobs share, the numbers are noisy: read the load line.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from bip_torch import layers as L
from bip_torch.baselines import imp_schedule
from bip_torch.models import ARCHS, build
from bip_torch.slim import bake, executed_macs, slim
from shared import bench, torch_export
from shared.errors import main_guard


def _randomise(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random scores and BN statistics (the speed of a network does not depend on them)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, L._Masked):
                m.popup_scores.copy_(torch.randn(m.popup_scores.shape, generator=g))
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
    return model.eval()


class SparseConv2d(nn.Module):
    """A conv whose weight is a CSR matrix (out, in * kh * kw): im2col, then one sparse x dense product."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        self.k, self.s, self.p, self.out = conv.kernel_size, conv.stride, conv.padding, conv.out_channels
        with warnings.catch_warnings():  # "sparse CSR support is in beta"
            warnings.simplefilter("ignore")
            self.weight = conv.weight.detach().flatten(1).to_sparse_csr()
        self.bias = None if conv.bias is None else conv.bias.detach()

    def forward(self, x):
        n, _, h, w = x.shape
        cols = F.unfold(x, self.k, padding=self.p, stride=self.s)  # (n, c k k, l)
        oh = (h + 2 * self.p[0] - self.k[0]) // self.s[0] + 1
        ow = (w + 2 * self.p[1] - self.k[1]) // self.s[1] + 1
        y = torch.sparse.mm(self.weight, cols.transpose(0, 1).reshape(cols.shape[1], -1))  # (out, n l)
        y = y.view(self.out, n, oh * ow).transpose(0, 1).reshape(n, self.out, oh, ow)
        return y if self.bias is None else y + self.bias.view(1, -1, 1, 1)


def sparse_model(model: nn.Module) -> nn.Module:
    """Baked copy with every conv replaced by `SparseConv2d` (the FC stays dense: it is tiny)."""
    out = bake(model)
    for name, m in list(out.named_modules()):
        if isinstance(m, nn.Conv2d):
            parent, _, attr = name.rpartition(".")
            setattr(out.get_submodule(parent) if parent else out, attr, SparseConv2d(m))
    return out.eval()


def _time(fns: dict, x, reps: int, warmup: int) -> dict:
    xn = x.numpy()
    calls = {name: (lambda f=f: f(xn)) for name, f in fns.items()}
    return bench.time_paired(calls, reps=reps, warmup=warmup)


def structured(args, workdir: Path, arch: str = "resnet18") -> dict:
    size, classes = (64, 200) if arch[0].isupper() else (32, 10)  # ResNet18/34/50: TinyImageNet-style
    torch.manual_seed(0)
    dense = _randomise(build(arch, "dense", classes))
    masked = _randomise(build(arch, "filter", classes, 0.5))
    slimmed = slim(masked, size)
    macs_dense, macs_slim = executed_macs(dense, size), executed_macs(slimmed, size)
    ratio = macs_dense / macs_slim
    print(f"\n== structured: {arch}, filter-wise k = 0.5, slimmed; executed MACs ratio {ratio:.2f}x ==")
    print(f"dense {macs_dense / 1e6:.1f}M MACs/image, slimmed {macs_slim / 1e6:.1f}M")
    tag = "" if arch == "resnet18" else f"{arch}_"
    out = {f"{tag}macs_ratio": ratio}
    for batch in args.batch_sizes:
        x = torch.randn(batch, 3, size, size)
        with torch.inference_mode():
            diff = (slimmed(x) - masked(x)).abs().max().item()
        fns = {}
        for kind, model in (("dense", dense), ("slimmed", slimmed)):
            made = torch_export.runtimes(
                model, x, names=args.runtimes, threads=args.threads, workdir=workdir / f"{kind}-{batch}"
            )
            fns.update({f"{kind} {k}": f for k, f in made.items()})
        times = _time(fns, x, args.reps, args.warmup)
        ref = f"dense {args.runtimes[0]}"
        print(bench.format_table(times, batch, reference=ref, title=f"batch {batch}", load=bench.machine_load()))
        dense_names = [n for n in times if n.startswith("dense")]
        pruned_names = [n for n in times if n.startswith("slimmed")]
        head = bench.headline(times, dense_names, pruned_names)
        target = 0.8 * ratio
        v = bench.verdict(head.speedup, target, head.paired, flops_ratio=ratio)
        print(
            f"batch {batch}: best slimmed ({head.best_pruned}) / best dense ({head.best_dense}) = "
            f"{head.speedup:.2f}x; target 0.8 x MACs ratio = {target:.2f}x: {v}; max |slimmed - masked| {diff:.1e}"
        )
        out[f"{tag}speedup_b{batch}"] = head.speedup
    return out


def unstructured(args) -> dict:
    out = {}
    print("\n== unstructured: CIFAR ResNet-18, global masks; dense runtimes vs CSR sparse convs ==")
    torch.manual_seed(0)
    dense = _randomise(build("resnet18", "dense", 10))
    for batch in args.sparse_batch_sizes:
        x = torch.randn(batch, 3, 32, 32)
        fns = torch_export.runtimes(dense, x, names=("eager", "onnxruntime"), threads=args.threads, log=lambda s: None)
        fns = {f"dense {k}": f for k, f in fns.items()}
        for sparsity in (0.9, 0.986):
            m = _randomise(build("resnet18", "unstructured", 10, 1 - sparsity))
            sp = sparse_model(m)
            with torch.inference_mode():
                diff = (sp(x) - m(x)).abs().max().item()
            fns[f"csr {100 * sparsity:g}%"] = torch_export.torch_runner(sp)
            print(f"  {100 * sparsity:g} % sparse: max |csr - masked| {diff:.1e}")
        times = _time(fns, x, args.reps, args.warmup)
        print(bench.format_table(times, batch, reference="dense eager", title=f"batch {batch}"))
        best_dense = bench.best(times, [n for n in times if n.startswith("dense")])
        for sparsity in ("90", "98.6"):
            s = bench.summarize(times[best_dense]).median / bench.summarize(times[f"csr {sparsity}%"]).median
            print(f"batch {batch}: csr at {sparsity} % sparsity / best dense ({best_dense}) = {s:.2f}x")
            out[f"csr{sparsity}_b{batch}"] = s
    return out


def epoch_costs(args) -> dict:
    """Seconds of one epoch of each trainer on the same images (resnet20s, batch 64)."""
    from bip_torch.bilevel import Backward, Torch1SGD, base_step, bilevel_step
    from shared.data import CIFAR_MEAN, CIFAR_STD, load_digits_cifar
    from shared.torch_train import DistContext, TensorLoader

    torch.set_num_threads(args.threads)
    data = load_digits_cifar("train").subset(args.epoch_images)
    ctx = DistContext()
    make = lambda s: TensorLoader(data.images, data.labels, 64, ctx.device, CIFAR_MEAN, CIFAR_STD, train=True, seed=s)  # noqa: E731
    train, val = make(0), make(1)
    bw = Backward(ctx)

    def one_epoch(kind: str) -> float:
        torch.manual_seed(0)
        m = build("resnet20s", "dense" if kind == "dense" else "unstructured", 10, 0.1).train()
        if kind == "dense":
            L.switch_to_bilevel(m)
        elif kind in ("bip", "hydra"):
            L.alias_scores_to_weights(m)
            L.switch_to_prune(m)
        else:
            L.copy_scores_from_weights(m)
            L.switch_to_finetune(m)
        opt, mopt = Torch1SGD(m.parameters(), 0.01), Torch1SGD(m.parameters(), 0.01)
        t0 = time.perf_counter()
        for (xu, yu), (xl, yl) in zip(train, val):
            if kind == "bip":
                bilevel_step(m, opt, mopt, (xl, yl), (xu, yu), bw, 1e-4)
            else:
                base_step(m, opt, (xu, yu), bw)
        return time.perf_counter() - t0

    kinds = ("dense", "bip", "hydra", "imp")
    samples = {k: [] for k in kinds}
    for r in range(args.epoch_reps):
        for k in bench.rotation(list(kinds), r):
            samples[k].append(one_epoch(k))
    med = {k: bench.summarize(v).median for k, v in samples.items()}
    print(f"\n== epoch cost: resnet20s, {args.epoch_images} images, batch 64, {args.epoch_reps} rounds ==")
    for k in kinds:
        st = bench.summarize(samples[k])
        print(f"  {k:6s} epoch: median {st.median:.2f} s (spread {100 * st.spread:.0f} %)")
    out = {"bip_over_dense": med["bip"] / med["dense"], "hydra_over_dense": med["hydra"] / med["dense"]}
    print(f"BiP epoch / dense epoch = {out['bip_over_dense']:.2f}x (paper: BiP ~86 min vs dense ~82 min per run)")
    print(f"HYDRA epoch / dense epoch = {out['hydra_over_dense']:.2f}x")
    for sparsity, k in (("59", 0.41), ("86.6", 0.1342), ("98.6", 0.0144)):
        rounds = len(imp_schedule(k))
        ratio = rounds * args.imp_epochs_per_round * med["imp"] / (args.bip_epochs * med["bip"])
        out[f"imp_over_bip_s{sparsity}"] = ratio
        print(
            f"IMP to {sparsity} % ({rounds} rounds x {args.imp_epochs_per_round} epochs) / BiP ({args.bip_epochs} "
            f"epochs) = {ratio:.2f}x (paper: 2-7x)"
        )
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bip_torch.bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--parts", nargs="+", default=["structured", "unstructured", "epoch"],
                   choices=["structured", "unstructured", "epoch"])  # fmt: skip
    p.add_argument("--archs", nargs="+", default=["resnet18", "vgg16_bn"], choices=sorted(ARCHS),
                   help="structured part: the networks slimmed at k = 0.5 filter-wise")  # fmt: skip
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[128, 1], help="structured part")
    p.add_argument("--sparse-batch-sizes", type=int, nargs="+", default=[16, 1], help="unstructured part")
    p.add_argument("--reps", type=int, default=5, help="timed rounds per batch size")
    p.add_argument("--warmup", type=int, default=1, help="untimed calls per contender before the rounds")
    p.add_argument("--threads", type=int, default=1, help="threads of every runtime (torch intra-op too)")
    p.add_argument("--runtimes", nargs="+", default=list(torch_export.DEFAULT_RUNTIMES),
                   choices=torch_export.TORCH_RUNTIMES)  # fmt: skip
    p.add_argument("--epoch-images", type=int, default=512, help="images of the epoch-cost part")
    p.add_argument("--epoch-reps", type=int, default=3, help="rounds of the epoch-cost part")
    p.add_argument("--bip-epochs", type=int, default=100, help="BiP prune epochs (bip.yml)")
    p.add_argument("--imp-epochs-per-round", type=int, default=100, help="IMP retraining epochs per round (assumed)")
    return p


@main_guard
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    for name in ("reps", "threads", "epoch_images", "epoch_reps"):
        if getattr(args, name) < 1:
            from shared.errors import UserError

            raise UserError(f"--{name.replace('_', '-')} must be >= 1")
    print(f"BiP bench: fp32 CPU, {args.threads} thread(s); {bench.describe_load()}")
    results = {}
    with tempfile.TemporaryDirectory(prefix="bip-bench-") as tmp:
        if "structured" in args.parts:
            for arch in args.archs:
                results.update(structured(args, Path(tmp) / arch, arch))
        if "unstructured" in args.parts:
            results.update(unstructured(args))
        if "epoch" in args.parts:
            results.update(epoch_costs(args))
    print("\n== summary ==")
    for k, v in results.items():
        print(f"  {k}: {v:.2f}" if isinstance(v, float) and math.isfinite(v) else f"  {k}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
