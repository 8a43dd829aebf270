"""DSP on ImageNet ResNet-18 / ResNet-50 (torchvision v1.5 models).

    python -m dsp_torch.imagenet dsp      -a resnet50 --pretrained resnet50.pth --train DIR --val DIR -g 2 -r 5e-4
    python -m dsp_torch.imagenet finetune -a resnet50 --train DIR --val DIR -g 2 -p 0.7
    python -m dsp_torch.imagenet eval     --ckpt imagenetmodel/resnet50_P0g2c0.70.pkl --val DIR

--train / --val are class-folder trees (the Kaggle validation images sorted with
`python -m shared.data imagenet-sort-val`) or BiP-format LMDB files (`python -m shared.data folder2lmdb`).

The authors released no ImageNet code. What is known (research notes 2.6): g = 2; filter pruning on
every 2nd prunable conv for ResNet-18 and every 3rd (conv3 of each bottleneck) for ResNet-50; target
rates 0.60/0.70/0.80 (ResNet-18) and 0.70/0.80/0.90 (ResNet-50). The schedule below is INFERRED
(a common ImageNet fine-tuning recipe), recorded as variant recipe=inferred: group learning 30 epochs,
lr 0.01, weight decay 1e-4, cosine; fine-tuning 90 epochs in 3 cycles, lr 0.01, weight decay 1e-4;
batch 256. The dense weights come from --pretrained (e.g. torchvision's resnet50-0676ba61.pth,
read with weights_only=True; nothing is downloaded).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dsp_torch.checkpoints import load_checkpoint, model_from_checkpoint
from dsp_torch.cifar_finetune import load_group_learned
from dsp_torch.dsp_module import check_groups
from dsp_torch.flags import (
    add_common_args,
    add_dsp_args,
    add_finetune_args,
    dsp_variant,
    finetune_variant,
    validate_dsp,
    validate_finetune,
)
from dsp_torch.models import IMAGENET_ARCHS, imagenet_resnet
from dsp_torch.runner import StageRunner
from dsp_torch.stages import finetune, group_learning
from shared.errors import UserError, main_guard
from shared.torch_train import load_weights

FP_EVERY_NTH = {"resnet18": 2, "resnet34": 2, "resnet50": 3}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m dsp_torch.imagenet", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="command", required=True)
    for name, epochs in (("dsp", 30), ("finetune", 90)):
        s = sub.add_parser(
            name,
            formatter_class=argparse.RawDescriptionHelpFormatter,
            help="group learning" if name == "dsp" else "pruning and fine-tuning",
        )
        s.add_argument("-a", "--arch", choices=IMAGENET_ARCHS, default="resnet50")
        s.add_argument("--train", required=True, help="training images: class folders or a .lmdb file")
        s.add_argument("--val", required=True, help="validation images: class folders or a .lmdb file")
        s.add_argument("--image-size", type=int, default=224, help="crop size (smaller only for smoke tests)")
        if name == "dsp":
            add_dsp_args(s)
            s.set_defaults(groups=2, regularize=5e-4)
            s.add_argument("--pretrained", help="dense weights: torchvision state dict or a dsp_torch checkpoint")
        else:
            add_finetune_args(s, fp_every_nth_conv=0)
            s.set_defaults(groups=2, cycles=3, prune=0.7)
            s.add_argument("--ckpt", help="group-learned checkpoint (default <save_dir>/<arch>_G<d>g<G>.pkl)")
        add_common_args(s, epochs=epochs, lr=0.01, wd=1e-4, batch_size=256)
        s.set_defaults(save_dir="./imagenetmodel/")
    e = sub.add_parser("eval", help="top-1 of a checkpoint on the validation images")
    e.add_argument("--ckpt", required=True)
    e.add_argument("--val", required=True)
    e.add_argument("--image-size", type=int, default=224)
    e.add_argument("-b", "--batch-size", type=int, default=256)
    e.add_argument("-j", "--workers", type=int, default=8)
    return p


def _dense_model(args):
    model = imagenet_resnet(args.arch)
    if args.pretrained:
        obj = load_weights(args.pretrained, "pretrained weights")
        if isinstance(obj, dict) and obj.get("format") == "dsp_torch":
            return model_from_checkpoint(obj, args.pretrained, stage="pretrained")
        try:
            model.load_state_dict(obj, strict=True)
        except (RuntimeError, TypeError, AttributeError) as err:
            msg = str(err).splitlines()[0][:200]
            raise UserError(f"{args.pretrained} is not a {args.arch} state dict: {msg}") from err
    return model


def _data(args, runner_ctx, device):
    from dsp_torch.data import imagenet_loaders

    return imagenet_loaders(
        args.train,
        args.val,
        args.batch_size,
        device,
        runner_ctx,
        workers=args.workers,
        image_size=args.image_size,
        seed=args.seed,
    )


def run(args) -> int:
    from shared.torch_train import setup_distributed

    arch = {"family": "imagenet", "name": args.arch, "num_classes": 1000}
    if args.command == "dsp":
        validate_dsp(args)
        check_groups(imagenet_resnet(args.arch), args.groups)
        variant = dsp_variant(args, arch=args.arch, recipe="inferred")
        name = f"{args.arch}_G{args.device}g{args.groups}.pkl"
    else:
        if args.fp_every_nth_conv == 0:
            args.fp_every_nth_conv = FP_EVERY_NTH[args.arch]
        validate_finetune(args)
        variant = finetune_variant(args, arch=args.arch, recipe="inferred")
        name = f"{args.arch}_P{args.device}g{args.groups}c{args.prune:.2f}.pkl"
    ctx = setup_distributed(args.device_type)
    data = _data(args, ctx, ctx.device)
    arch["num_classes"] = data.num_classes
    src = None
    if args.command == "finetune":
        src = args.ckpt or str(Path(args.save_dir) / f"{args.arch}_G{args.device}g{args.groups}.pkl")
    elif getattr(args, "pretrained", None):
        src = args.pretrained
    with StageRunner(args, args.command, name, variant, data=data, source=src) as runner:
        if runner.finished_already():
            return 0
        config = {**vars(args), "stage": args.command}
        if args.command == "dsp":
            model = _dense_model(args)
            if data.num_classes != 1000:
                model.fc = type(model.fc)(model.fc.in_features, data.num_classes)
            group_learning.fit(runner, model, arch, config, variant)
        else:
            model, ckpt = load_group_learned(src, args.groups, arch_name=args.arch)
            p = round(args.prune, 2)
            finetune.fit(
                runner,
                model,
                ckpt["arch"],
                {**config, "source": src},
                variant,
                row=f"imagenet/{args.arch}/g{args.groups}/p{p:.2f}",
            )
        return 0


def evaluate(args) -> int:
    import torch

    from dsp_torch.data import imagenet_loaders
    from shared.torch_train import DistContext

    ckpt = load_checkpoint(args.ckpt)
    model = model_from_checkpoint(ckpt, args.ckpt).eval()
    data = imagenet_loaders(
        args.val,
        args.val,
        args.batch_size,
        torch.device("cpu"),
        DistContext(),
        workers=args.workers,
        image_size=args.image_size,
    )
    correct = total = 0
    with torch.inference_mode():
        for x, y in data.test:
            correct += int((model(x).argmax(1) == y).sum())
            total += y.numel()
    print(f"{args.ckpt}: top-1 {100.0 * correct / total:.2f} % on {total} images")
    return 0


@main_guard
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return evaluate(args) if args.command == "eval" else run(args)


if __name__ == "__main__":
    sys.exit(main())
