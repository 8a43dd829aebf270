"""Inference speed of dense, the authors' packed and our packed ResNet-56 g=4, side by side.

    python -m dsp_torch.bench [--ckpt resnet56_g4.pt] [--batch-sizes 128 1] [--reps 15] [--device cpu]

In one process, each repetition times every model once (in rotating order, after warm-up; each timed
call follows an untimed one, so the model is measured warm, as when serving batch after batch), so
machine noise hits them alike; the table gives median images/s per model and the ratios of the medians.
Models (fp32, eval mode, no autograd):

- dense (eager): the option-B ResNet-56 as PyTorch runs it by default: the reference of the target;
- dense (optimised): the same network given our packer's treatment (BN folded, channels_last,
  scripted and frozen): what the dense model achieves with the deployment tricks we use;
- authors' packed: the released TorchScript file as is;
- ours: the released model converted and packed by `dsp_torch.pack`.

The released file comes from --ckpt or $PRUNING_CHECKPOINT_DIR/dsp/resnet56_g4.pt.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

from dsp_torch.dsp_module import attach_prune_buffers
from dsp_torch.models import cifar_resnet
from dsp_torch.pack import PackOptions, pack, packed_macs, to_torchscript
from dsp_torch.released import convert_released, load_released
from shared.errors import UserError, main_guard
from shared.paths import checkpoint_root

AUTHORS, OURS = "authors' packed", "ours (packed)"


def build_models(ckpt: str, device: torch.device, align: int) -> dict:
    converted = convert_released(ckpt)
    depth = converted.arch["depth"]
    dense = cifar_resnet(depth).eval()
    dense_masked = cifar_resnet(depth).eval()
    attach_prune_buffers(dense_masked, 1)  # all-ones masks: the packer keeps everything
    opts = PackOptions(align=align)
    ours = pack(converted.model, opts)
    models = {
        "dense (eager)": dense,
        "dense (optimised)": to_torchscript(pack(dense_masked, opts)),
        AUTHORS: load_released(ckpt),
        OURS: to_torchscript(ours),
    }
    info = {
        "depth": depth,
        "groups": converted.groups,
        "ours_macs": packed_macs(ours),
        "dense_macs": packed_macs(pack(dense_masked, opts)),
    }
    return {k: v.to(device) for k, v in models.items()}, converted, info


def time_models(models: dict, batch: int, reps: int, warmup: int, device: torch.device) -> dict:
    x = torch.randn(batch, 3, 32, 32, device=device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times = {k: [] for k in models}
    with torch.inference_mode():
        for _ in range(warmup):
            for m in models.values():
                m(x)
        names = list(models)
        for r in range(reps):
            for k in names[r % len(names) :] + names[: r % len(names)]:
                models[k](x)  # one untimed call first: time the model warm, as in steady serving
                sync()
                t = time.perf_counter()
                models[k](x)
                sync()
                times[k].append(time.perf_counter() - t)
    return times


@main_guard
def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m dsp_torch.bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--ckpt", help="released packed model (default $PRUNING_CHECKPOINT_DIR/dsp/resnet56_g4.pt)")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[128, 1])
    p.add_argument("--reps", type=int, default=15, help="timed repetitions per model and batch size")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--align", type=int, default=8, help="packing width multiple (default 8)")
    args = p.parse_args(argv)
    ckpt = args.ckpt
    if ckpt is None:
        root = checkpoint_root()
        if root is None:
            raise UserError("give --ckpt (a released model such as resnet56_g4.pt) or set PRUNING_CHECKPOINT_DIR")
        ckpt = str(root / "dsp" / "resnet56_g4.pt")
    if not Path(ckpt).is_file():
        raise UserError(f"released model {ckpt} does not exist")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda asked for, but no CUDA device is available")
    models, converted, info = build_models(ckpt, device, args.align)
    print(
        f"{Path(ckpt).name}: ResNet-{info['depth']} g={info['groups']}; device {device}, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}, fp32"
    )
    print(
        f"packed MACs: ours {info['ours_macs']:,} vs dense {info['dense_macs']:,} "
        f"({info['dense_macs'] / info['ours_macs']:.2f}x fewer); DSP-convention kernels: 65% fewer for g=4"
    )
    for batch in args.batch_sizes:
        times = time_models(models, batch, args.reps, args.warmup, device)
        med = {k: statistics.median(v) for k, v in times.items()}
        base, opt = med["dense (eager)"], med["dense (optimised)"]
        print(f"\nbatch {batch} ({args.reps} paired repetitions, median):")
        print(f"  {'model':20s} {'ms/batch':>10s} {'images/s':>10s} {'vs dense eager':>15s} {'vs dense opt.':>14s}")
        for k, v in med.items():
            print(f"  {k:20s} {v * 1e3:10.2f} {batch / v:10.1f} {base / v:14.2f}x {opt / v:13.2f}x")
        print(f"  ours vs authors' packed: {med[AUTHORS] / med[OURS]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
