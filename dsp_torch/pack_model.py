"""Pack a pruned model into a deployable TorchScript model (the authors' command name and flags).

    python -m dsp_torch.pack_model --ckpt cifarmodel/resnet56_P0g4c0.50.pkl --save resnet56_g4_packed.pt
    python -m dsp_torch.pack_model --ckpt resnet56_g4.pt --save ours.pt     # repack a released model
    python -m dsp_torch.pack_model --ckpt ... --save theirs.pt --packing branches   # the authors' form
    python -m dsp_torch.pack_model --ckpt ... --save p.pt --onnx p.onnx --exported p.pt2  # + ONNX, torch.export

Not the authors' structure by default. The authors' pack_model.py builds one branch per group of every
pruned conv (gather, small conv, concatenate, index_add): it executes exactly DSP's kernel count but
runs slower than the dense model on CPUs and GPUs. `--packing ours` (default, `dsp_torch.pack`) builds
one conv per layer over the union of the groups' channels, dead filters dropped: more MACs than the
kernel count, less time. `--packing branches` (`dsp_torch.pack_branches`, CIFAR ResNets) builds the
authors' multi-branch form: exact, slower. `--packing union|grouped|merge2|merge3|auto`
(`dsp_torch.pack_grouped`) keep part of the group structure per conv (exact widths: a conv over the
groups' union, one grouped conv over a gathered input, the groups merged into at most 2 or 3 convs,
or per conv the fastest of these, timed on --batch images).

The input is a pruned checkpoint (ours, or the authors' fine-tuned [state_dict, acc] file) or a
released TorchScript model, which is converted first. The output computes what the masked model
computes (checked here: max abs difference on a batch) and runs faster than the dense model; see
`dsp_torch.pack` for how. With --data-dir the packed model's test accuracy is printed, as the
authors' script does. The archive carries a `dsp_torch_packed.json` with the model's description.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from dsp_torch.flops import load_any, reductions
from dsp_torch.pack import PackOptions, pack, packed_macs, to_torchscript
from dsp_torch.pack_branches import pack_branches
from dsp_torch.pack_grouped import PACKINGS, GroupedOptions, pack_grouped
from shared.errors import UserError, check_range, main_guard

META_NAME = "dsp_torch_packed.json"
TOLERANCE = 1e-3  # max |packed - masked| accepted (float reassociation gives ~1e-5 on ResNet-56)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m dsp_torch.pack_model", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--ckpt", required=True, help="pruned checkpoint or released TorchScript model")
    p.add_argument("--save", required=True, help="where to write the packed TorchScript model")
    p.add_argument("-l", "--layers", type=int, help="expected ResNet depth (checked against the checkpoint)")
    p.add_argument("-g", "--groups", type=int, help="expected number of groups (checked against the checkpoint)")
    p.add_argument(
        "--packing",
        choices=["ours", "branches", *PACKINGS],
        default="ours",
        help="ours: one conv per layer over the groups' union of channels, widths rounded to --align "
        "(default); branches: the authors' one branch per group (exact kernel count, slower; CIFAR "
        "ResNets); union / grouped / merge2 / merge3: per conv a union conv, one grouped conv over a "
        "gathered input, or the groups merged into <= 2 / 3 convs (exact widths); auto: per conv the "
        "fastest of those four, timed on --batch images (see dsp_torch.pack_grouped)",
    )
    p.add_argument("--batch", type=int, default=128, help="batch size that --packing auto times (default 128)")
    p.add_argument("--align", type=int, default=8, help="--packing ours: round widths up to this multiple (default 8)")
    p.add_argument("--no-channels-last", action="store_true", help="keep NCHW activations")
    p.add_argument("--data-dir", help="CIFAR-10 folder: print the packed model's test accuracy")
    p.add_argument("--onnx", help="also write the packed model as ONNX here (checked in onnxruntime)")
    p.add_argument("--exported", help="also write the packed model as a torch.export program (.pt2) here")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    return p


def pack_checkpoint(
    ckpt: str,
    options: PackOptions,
    depth: int | None = None,
    groups: int | None = None,
    packing: str = "ours",
    batch: int = 128,
):
    """(masked model, arch, packed eager module, metadata)."""
    model, arch, what = load_any(ckpt)
    if depth is not None and arch.get("depth") != depth:
        raise UserError(f"{ckpt} holds a ResNet-{arch.get('depth')}, but -l {depth} was given")
    masked = [m for m in model.modules() if hasattr(m, "mask")]
    if not masked:
        raise UserError(f"{ckpt} is a dense ({what}) model; pack a pruned one (python -m dsp_torch.cifar_finetune)")
    if groups is not None and masked[0].group.shape[0] != groups:
        raise UserError(f"{ckpt} was pruned with {masked[0].group.shape[0]} groups, but -g {groups} was given")
    model.eval()
    if packing == "branches":
        if arch["family"] != "cifar":
            raise UserError("--packing branches supports the CIFAR ResNets; use --packing ours for ImageNet models")
        net = pack_branches(model)
    size = 32 if arch["family"] == "cifar" else 224
    chosen = None
    if packing in PACKINGS:
        net, chosen = pack_grouped(model, GroupedOptions(packing=packing, batch=batch, image_size=size))
    elif packing == "ours":
        net = pack(model, options)
    counts = reductions(model, arch)
    meta = {
        "format": "dsp_torch packed",
        "version": 1,
        "arch": arch,
        "source": str(ckpt),
        "packing": packing,
        "options": vars(options) if packing == "ours" else ({"batch": batch} if packing == "auto" else {}),
        "chosen_per_conv": chosen,
        "packed_macs": packed_macs(net, size),
        **{k: v for k, v in counts.items() if k.endswith("_pct") or k.endswith("_macs") or k.endswith("_params")},
    }
    return model, arch, net, meta


def _write_checked(out: Path, write, load, reference, x: torch.Tensor, what: str) -> float:
    """Write through a temporary name, load it back in its runtime, compare with `reference` on `x`;
    renamed to `out` only when it matches. Returns the max abs difference."""
    tmp = out.with_name(f".{out.stem}.tmp{out.suffix}")  # torch.export.save wants the .pt2 suffix
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        write(tmp)
        diff = float(abs(load(tmp)(x) - reference).max())
        if not diff <= TOLERANCE:
            raise UserError(f"{what} differs from the masked model by {diff:.2e}; {out} not written")
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    print(f"saved {out} ({what}; max |{what} - masked| = {diff:.2e})")
    return diff


@main_guard
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    check_range("--align", args.align, 1, 256)
    check_range("--batch", args.batch, 1, 4096)
    outs = [Path(p) for p in (args.save, args.onnx, args.exported) if p]
    if len(set(outs)) < len(outs):
        raise UserError("--save, --onnx and --exported must be different files")
    for out in outs:
        if out.exists() and not args.overwrite:
            raise UserError(f"{out} exists; pass --overwrite to replace it")
    options = PackOptions(align=args.align, channels_last=not args.no_channels_last)
    model, arch, net, meta = pack_checkpoint(args.ckpt, options, args.layers, args.groups, args.packing, args.batch)
    script = to_torchscript(net)
    size = 32 if arch["family"] == "cifar" else 224
    x = torch.randn(64, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        reference = model(x)
        diff = (script(x) - reference).abs().max().item()
    meta["max_abs_diff_vs_masked"] = diff
    print(
        f"packed {args.ckpt} ({args.packing}): DSP-convention FLOPs -{meta['dsp_flops_reduction_pct']:.2f} %, params "
        f"-{meta['dsp_params_reduction_pct']:.2f} %; packed network {meta['packed_macs']:,} MACs "
        f"(dense {meta['whole_dense_macs']:,}); max |packed - masked| = {diff:.2e}"
    )
    if diff > TOLERANCE:
        raise UserError(f"packed model differs from the masked model by {diff:.2e}; not saved")
    if args.data_dir:
        from dsp_torch.eval import evaluate_callable

        acc, n = evaluate_callable(script, args.data_dir)
        meta["test_top1"] = acc
        print(f"test accuracy of the packed model: {acc:.2f} % on {n} images")
    # the exports are checked on 5 images: another batch size than the example they were traced with
    x5, ref5 = x[:5], reference[:5].numpy()
    example = x[:2]
    if args.onnx or args.exported:  # traced once by torch.export; the ONNX file is written from that program
        from shared.bench import onnxruntime_runner
        from shared.torch_export import export_program, load_exported, program_to_onnx, save_program

        program = export_program(net, example)
    if args.exported:

        def run_exported(p):
            module = load_exported(p)
            return lambda a: module(a).detach().numpy()

        meta["exported_max_abs_diff_vs_masked"] = _write_checked(
            Path(args.exported), lambda p: save_program(program, p), run_exported, ref5, x5, "torch.export"
        )
    if args.onnx:
        meta["onnx_max_abs_diff_vs_masked"] = _write_checked(
            Path(args.onnx),
            lambda p: program_to_onnx(program, p),
            lambda p: lambda a: onnxruntime_runner(p, 1)(a.numpy()),
            ref5,
            x5,
            "ONNX in onnxruntime",
        )
    out = Path(args.save)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    torch.jit.save(script, str(tmp), _extra_files={META_NAME: json.dumps(meta)})
    tmp.replace(out)
    print(f"saved {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
