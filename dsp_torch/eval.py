"""Evaluate a DSP model on the CIFAR-10 test set.

    python -m dsp_torch.eval --ckpt resnet56_g4.pt --data-dir DIR          # a released TorchScript model
    python -m dsp_torch.eval --ckpt cifarmodel/resnet56_P0g4c0.50.pkl --data-dir DIR
    python -m dsp_torch.eval --ckpt packed.pt --data-dir DIR               # a model packed by pack_model

Released models are converted to this project's masked model and evaluated through it (with
--check-script the authors' TorchScript is run on the same images too and both accuracies are
printed). Normalisation: mean (0.4914, 0.4822, 0.4465), std (0.2470, 0.2435, 0.2616), the authors'.
With --records DIR a run record is written (kind released-model for the authors' files).
"""

from __future__ import annotations

import argparse
import sys

import torch

from shared.data import CIFAR_MEAN, CIFAR_STD, load_image_classification
from shared.errors import UserError, check_count, main_guard
from shared.paths import check_writable
from shared.results.records import make_record, write_record
from shared.torch_train import is_torchscript_archive

PACKED_META = "dsp_torch_packed.json"


@torch.inference_mode()
def evaluate_callable(
    fn, data_dir, dataset: str = "cifar10", batch_size: int = 500, limit: int | None = None, source: str = "the model"
) -> tuple[float, int]:
    """Top-1 % of fn (NCHW normalised float input -> logits) on the test split (its first `limit`
    images when given). A model whose outputs are not the data set's classes is refused."""
    test = load_image_classification(dataset, "test", data_dir)
    n = len(test) if limit is None else min(limit, len(test))
    mean = torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR_STD).view(1, 3, 1, 1)
    correct = 0
    for i in range(0, n, batch_size):
        x = torch.from_numpy(test.images[i : min(i + batch_size, n)]).permute(0, 3, 1, 2).float() / 255
        y = torch.from_numpy(test.labels[i : min(i + batch_size, n)])
        out = fn((x - mean) / std)
        if out.ndim != 2 or out.shape[1] != test.num_classes:
            raise UserError(
                f"{source} gives {tuple(out.shape[1:])} outputs per image, but {dataset} has "
                f"{test.num_classes} classes: a model trained for another data set"
            )
        correct += int((out.argmax(1) == y).sum())
    return 100.0 * correct / n, n


def _is_our_packed(path) -> bool:
    import zipfile

    with zipfile.ZipFile(path) as z:
        return any(n.endswith(f"extra/{PACKED_META}") for n in z.namelist())


@main_guard
def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m dsp_torch.eval", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--ckpt", required=True, help="released TorchScript, packed model or dsp_torch checkpoint")
    p.add_argument("--data-dir", help="folder holding CIFAR-10 (default $PRUNING_DATA_DIR)")
    p.add_argument(
        "--dataset",
        default="cifar10",
        choices=["cifar10", "digits"],
        help="test set: cifar10 (from --data-dir / $PRUNING_DATA_DIR; default) or digits, the embedded demo "
        "set of the demo runs",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=500,
        help="images per forward pass (default 500); changes memory use and speed, not the accuracy",
    )
    p.add_argument(
        "--check-script",
        action="store_true",
        help="released models: also run the authors' TorchScript and print its accuracy",
    )
    p.add_argument("--records", help="write a run record into this folder")
    args = p.parse_args(argv)
    check_count("--batch-size", args.batch_size, 1, 10**6)
    if args.records:  # the record is written after the evaluation: prove first that it can be
        check_writable(args.records, "run record")
    from dsp_torch.flops import load_any, reductions

    metrics: dict = {}
    kind, row, variant = "smoke", None, {}
    test = load_image_classification(args.dataset, "test", args.data_dir)
    if is_torchscript_archive(args.ckpt) and _is_our_packed(args.ckpt):
        script = torch.jit.load(args.ckpt, map_location="cpu").eval()
        acc, n = evaluate_callable(script, args.data_dir, args.dataset, args.batch_size, source=args.ckpt)
        print(f"{args.ckpt} (packed by dsp_torch): top-1 {acc:.2f} % on {n} test images")
        metrics["top1"] = acc
    else:
        model, arch, what = load_any(args.ckpt)
        model.eval()
        acc, n = evaluate_callable(model, args.data_dir, args.dataset, args.batch_size, source=args.ckpt)
        print(f"{args.ckpt} ({what}): top-1 {acc:.2f} % on {n} test images")
        r = reductions(model, arch)
        metrics = {
            "top1": acc,
            "flops_reduction_pct": r["dsp_flops_reduction_pct"],
            "params_reduction_pct": r["dsp_params_reduction_pct"],
            "whole_flops_reduction_pct": r["whole_flops_reduction_pct"],
            "whole_params_reduction_pct": r["whole_params_reduction_pct"],
        }
        if what.startswith("released"):
            from dsp_torch.released import load_released

            kind = "released-model"
            groups = int(what.split("g=")[1].rstrip(")"))
            row, variant = f"cifar10/resnet{arch['depth']}/g{groups}", {"groups": groups, "shortcut": "B"}
            if args.check_script:
                script_acc, _ = evaluate_callable(
                    load_released(args.ckpt), args.data_dir, args.dataset, args.batch_size
                )
                print(f"  the authors' TorchScript on the same images: top-1 {script_acc:.2f} %")
                metrics["top1_torchscript"] = script_acc
    if args.records:
        rec = make_record(
            "dsp",
            row,
            kind,
            metrics=metrics,
            data=test.identity(),
            variant=variant,
            convention="dsp-prunable" if "flops_reduction_pct" in metrics else None,
            config={"ckpt": str(args.ckpt), "batch_size": args.batch_size},
            frameworks=("torch",),
        )
        print(f"run record: {write_record(rec, args.records)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
