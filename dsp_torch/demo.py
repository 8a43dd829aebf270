"""Demo stage of `make demo`: the whole DSP pipeline, small, on the demo data.

    python -m dsp_torch.demo [--data-dir DIR] --out DIR [--records DIR]

Pretrain a ResNet-20 for a few epochs, learn 4 groups for one epoch, prune 50 % of the prunable-conv
FLOPs and fine-tune briefly, pack to TorchScript, then print accuracy, FLOPs/params reductions and
the packed model's speed next to the dense model's (and, when $PRUNING_CHECKPOINT_DIR holds the authors'
released models, the speed of their ResNet-56 g=4 packed both ways). CIFAR-10 when a data folder is given
(option or $PRUNING_DATA_DIR), else the embedded digits set. A few minutes on 2 CPU cores; the numbers are a
smoke test of the machinery, not the paper's (that takes the full recipe: scripts/dsp/cifar10_table.sh).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

from dsp_torch import cifar_dsp, cifar_finetune, cifar_pretrain
from dsp_torch.checkpoints import load_checkpoint, model_from_checkpoint
from dsp_torch.dsp_module import attach_prune_buffers
from dsp_torch.eval import evaluate_callable
from dsp_torch.flops import reductions
from dsp_torch.models import cifar_resnet
from dsp_torch.pack import PackOptions, pack, packed_macs, to_torchscript
from shared.demo_data import demo_dataset
from shared.errors import main_guard
from shared.paths import checkpoint_root


def _median_seconds(fn, x, reps=5):
    with torch.inference_mode():
        fn(x)
        times = []
        for _ in range(reps):
            t = time.perf_counter()
            fn(x)
            times.append(time.perf_counter() - t)
    return statistics.median(times)


@main_guard
def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m dsp_torch.demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--data-dir", help="CIFAR-10 folder (default $PRUNING_DATA_DIR; else the digits set)")
    p.add_argument("--out", default="runs/demo/dsp_torch", help="output folder")
    p.add_argument("--records", help="folder for the run records (default <out>/records)")
    p.add_argument(
        "--epochs",
        type=int,
        nargs=3,
        default=[4, 1, 2],
        metavar=("PRETRAIN", "DSP", "FINETUNE"),
        help="epochs of the three stages: pretraining, group learning, fine-tuning (default 4 1 2; the "
        "authors' recipe is 164 120 400)",
    )
    args = p.parse_args(argv)
    dataset = demo_dataset(args.data_dir)
    out = Path(args.out)
    common = [
        "-l",
        "20",
        "--save-dir",
        str(out),
        "--dataset",
        dataset,
        "--records",
        args.records or str(out / "records"),
    ]
    if args.data_dir:
        common += ["--data-dir", args.data_dir]
    t0 = time.time()
    print(f"DSP demo on {dataset}: ResNet-20, 4 groups, prune 50 % of the prunable-conv FLOPs")
    cifar_pretrain.run(cifar_pretrain.build_parser().parse_args(common + ["--epochs", str(args.epochs[0])]))
    cifar_dsp.run(
        cifar_dsp.build_parser().parse_args(common + ["-g", "4", "-r", "2e-3", "--epochs", str(args.epochs[1])])
    )
    cifar_finetune.run(
        cifar_finetune.build_parser().parse_args(
            common + ["-g", "4", "-p", "0.5", "--epochs", str(args.epochs[2]), "-c", "1", "--cascade-passes", "10"]
        )
    )
    pruned_path = out / "resnet20_P0g4c0.50.pkl"
    ckpt = load_checkpoint(pruned_path)
    model = model_from_checkpoint(ckpt, pruned_path).eval()
    counts = reductions(model, ckpt["arch"])
    packed = pack(model, PackOptions())
    script = to_torchscript(packed)
    x = torch.randn(128, 3, 32, 32)
    with torch.inference_mode():
        diff = (script(x) - model(x)).abs().max().item()
    acc_packed, n = evaluate_callable(script, args.data_dir, dataset)
    dense = cifar_resnet(20).eval()
    dense_masked = cifar_resnet(20).eval()
    attach_prune_buffers(dense_masked, 1)
    dense_opt = to_torchscript(pack(dense_masked, PackOptions()))
    t_dense, t_opt, t_ours = (_median_seconds(m, x) for m in (dense, dense_opt, script))
    print("\n== DSP demo summary ==")
    print(f"data: {dataset}, {n} test images; total {time.time() - t0:.0f} s")
    print(f"pruned ResNet-20 (g=4): top-1 {ckpt['best_acc']:.2f} % (packed model: {acc_packed:.2f} %)")
    print(
        f"DSP convention: FLOPs -{counts['dsp_flops_reduction_pct']:.2f} %, params "
        f"-{counts['dsp_params_reduction_pct']:.2f} %; "
        f"whole network: FLOPs -{counts['whole_flops_reduction_pct']:.2f} %, "
        f"params -{counts['whole_params_reduction_pct']:.2f} %"
    )
    print(
        f"packed: {packed_macs(packed):,} MACs executed (dense {counts['whole_dense_macs']:,}); "
        f"max |packed - masked| {diff:.1e}"
    )
    print(
        f"batch 128 on CPU: dense {128 / t_dense:.0f} img/s, dense optimised {128 / t_opt:.0f} img/s, "
        f"packed {128 / t_ours:.0f} img/s ({t_dense / t_ours:.2f}x dense, {t_opt / t_ours:.2f}x dense optimised; "
        "a one-epoch group learning leaves little structure to pack: see `make dsp-bench` for the released model)"
    )
    released = checkpoint_root()
    if released is not None and (released / "dsp" / "resnet56_g4.pt").is_file():
        from dsp_torch.released import convert_released, load_released

        path = released / "dsp" / "resnet56_g4.pt"
        conv = convert_released(path)
        ours = to_torchscript(pack(conv.model, PackOptions()))
        times = [_median_seconds(m, x) for m in (cifar_resnet(56).eval(), load_released(path), ours)]
        print(
            f"released ResNet-56 g=4 (65 % fewer prunable-conv FLOPs), batch 128: dense {128 / times[0]:.0f} img/s, "
            f"authors' packed {128 / times[1]:.0f} img/s ({times[0] / times[1]:.2f}x), ours packed "
            f"{128 / times[2]:.0f} img/s ({times[0] / times[2]:.2f}x dense; `make dsp-bench` for paired medians)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
