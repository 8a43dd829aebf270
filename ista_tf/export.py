"""Write a version of the ISTA chain (the compressed model by default) as SavedModel, TFLite and ONNX.

    python -m ista_tf.export --checkpoint_version 2 --out runs/ista/export/v2 [--train_dir ...]

Loads version N as `ista_tf.cifar10_eval` does (the compact model in <train_dir>_N, or with
--is_compressed=false the averaged weights of stage N's training checkpoint), writes

    <out>/saved_model/   SavedModel, `serve(images)` = inference-mode logits, batch dimension dynamic
    <out>/model.tflite   TFLite (fp32; run with the LiteRT interpreter of ai-edge-litert)
    <out>/model.onnx     ONNX through tf2onnx (run with onnxruntime or OpenVINO)
    <out>/export.json    what was exported and, per format, the largest |difference| from the model

and checks each exported file, loaded back in its runtime, against the model on --check_images
per-image-standardised test images (the model's input); any difference above --tolerance is an error.
An existing export is never overwritten: choose another --out.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import tensorflow as tf

from ista_tf import cli, data
from shared import tf_export
from shared.errors import UserError, check_range, main_guard

FORMATS = ("savedmodel", "tflite", "onnx")
FILES = {"savedmodel": "saved_model", "tflite": "model.tflite", "onnx": "model.onnx"}


def forward_of(model):
    """The inference function that is exported: logits of the inference-mode model (moving statistics)."""
    return lambda images: model(images, training=False)


def export_model(model, out: str | os.PathLike, example, formats=FORMATS) -> dict[str, Path]:
    """Write `model` in each of `formats` under `out`; {format: path}."""
    out = Path(out)
    forward = forward_of(model)
    paths = {}
    for fmt in formats:
        target = out / FILES[fmt]
        if fmt == "savedmodel":
            paths[fmt] = tf_export.save_savedmodel(forward, example, target, model)
        elif fmt == "tflite":
            paths[fmt] = tf_export.to_tflite(forward, example, target, model)
        else:
            paths[fmt] = tf_export.to_onnx(forward, example, target)
    return paths


def runners(paths: dict[str, Path], threads: int = 1) -> dict:
    """{format: callable(images) -> logits} loading each exported file in its runtime."""
    from shared.bench import onnxruntime_runner

    out = {}
    for fmt, path in paths.items():
        if fmt == "savedmodel":
            out[fmt] = tf_export.tf_runner(tf_export.load_savedmodel(path))
        elif fmt == "tflite":
            out[fmt] = tf_export.tflite_runner(path, threads)
        else:
            out[fmt] = onnxruntime_runner(path, threads)
    return out


def check_exports(model, paths: dict[str, Path], images) -> dict[str, float]:
    """{format: max |exported logits - model logits|} on `images`."""
    return tf_export.check_equal(runners(paths), forward_of(model), images)


def check_images(split, n: int) -> np.ndarray:
    """The first `n` images of `split`, per-image standardised (the model's input at evaluation)."""
    images = split.subset(min(n, len(split))).images
    return data.standardize(tf.constant(images)).numpy()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ista_tf.export", description=__doc__, formatter_class=cli.HelpFormatter)
    p.add_argument("--checkpoint_version", type=int, default=1, help="version N to export, in <train_dir>_N")
    p.add_argument(
        "--is_compressed",
        type=cli.str2bool,
        default=True,
        metavar="BOOL",
        help="true: the compact model of version N; false: the averaged weights of stage N's training checkpoint",
    )
    p.add_argument("--out", required=True, help="folder to write the exports into (must not hold an export yet)")
    p.add_argument("--formats", default=",".join(FORMATS), help=f"comma-separated subset of {FORMATS}")
    p.add_argument("--check_images", type=int, default=64, help="test images the exports are compared on")
    p.add_argument("--tolerance", type=float, default=1e-4, help="largest |logit difference| accepted")
    cli.add_common_flags(p)
    return p


@main_guard
def main(argv=None) -> int:
    from ista_tf.cifar10_eval import load_version

    args = build_parser().parse_args(argv)
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    if not formats or any(f not in FORMATS for f in formats):
        raise UserError(f"--formats must be a comma-separated subset of {FORMATS}, got {args.formats!r}")
    if args.checkpoint_version < 0 or args.check_images < 1:
        raise UserError("--checkpoint_version must be >= 0 and --check_images >= 1")
    if not math.isfinite(args.tolerance):  # every comparison with NaN is false: refuse it explicitly
        raise UserError(f"--tolerance must be a finite number > 0, got {args.tolerance}")
    check_range("--tolerance", args.tolerance, 0.0, math.inf, low_open=True, high_open=True)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; expected a folder")
    taken = [FILES[f] for f in formats if (out / FILES[f]).exists()] + (
        ["export.json"] if (out / "export.json").exists() else []
    )
    if taken:
        raise UserError(f"{out} already holds {', '.join(taken)}; choose another --out (nothing was overwritten)")
    model, _, _ = load_version(args.train_dir, args.checkpoint_version, args.model, args.is_compressed)
    split = cli.load_split(args.dataset, "test", args.data_dir)
    images = check_images(split, args.check_images)
    try:
        paths = export_model(model, out, images[:1], formats)
    except OSError as err:
        raise UserError(f"cannot write the export to {out}: {err.strerror or err}") from err
    diffs = check_exports(model, paths, images)
    summary = {
        "checkpoint_version": args.checkpoint_version,
        "is_compressed": args.is_compressed,
        "model": args.model,
        "widths": list(model.widths),
        "check_images": len(images),
        "max_abs_diff": diffs,
        "files": {f: str(p) for f, p in paths.items()},
    }
    (out / "export.json").write_text(json.dumps(summary, indent=2) + "\n")
    for fmt, d in diffs.items():
        print(f"{fmt}: {paths[fmt]} (max |logit difference| {d:.2e} on {len(images)} test images)")
    bad = {f: d for f, d in diffs.items() if not d <= args.tolerance}
    if bad:
        raise UserError(f"exported outputs differ from the model by more than --tolerance {args.tolerance}: {bad}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
