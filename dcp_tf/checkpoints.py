"""Model checkpoints (tf.train.Checkpoint + arch.json) and run progress files, written atomically.

A model folder (PocketFlow's `save_path`, `save_path_eval`, `dcp_save_path_eval` folders) holds
`arch.json` ({family, dataset, size}), `info.json` (what produced it) and the TF checkpoint `model-N.*`.
TensorFlow writes a checkpoint's data files first and its `checkpoint` index last, so an interrupted
save leaves the previous checkpoint readable; the JSON files are written to a temporary name and renamed.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import tensorflow as tf

from dcp_tf.models import build
from shared.errors import UserError


def folder_of(save_path: str) -> Path:
    """PocketFlow's flags name a checkpoint prefix (./models/model.ckpt); the folder holds our files."""
    p = Path(save_path)
    return p.parent if p.suffix == ".ckpt" or p.name.startswith("model.ckpt") else p


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


def read_json(path: Path, what: str):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise UserError(f"{path}: cannot read {what}: {err}") from err


def save_model(folder: str | Path, model, info: dict) -> str:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / "arch.json", model.arch)
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(model=model), str(folder), 1, checkpoint_name="model")
    path = manager.save()
    write_json(folder / "info.json", info)
    return path


def has_model(folder: str | Path) -> bool:
    folder = Path(folder)
    return (folder / "arch.json").is_file() and tf.train.latest_checkpoint(str(folder)) is not None


def restore_into(model, folder: str | Path, what: str = "checkpoint") -> None:
    """Restore `model` from `folder`; a checkpoint of another architecture (other variable names or
    shapes, PocketFlow issue #19) is a UserError naming both."""
    folder = Path(folder)
    path = tf.train.latest_checkpoint(str(folder))
    if path is None:
        raise UserError(f"no {what} in {folder}")
    arch = read_json(folder / "arch.json", "the architecture file") if (folder / "arch.json").is_file() else None
    if arch is not None and arch != model.arch:
        raise UserError(f"{what} {folder} holds a {arch} network, expected {model.arch}")
    reader = tf.train.load_checkpoint(path)
    shapes = reader.get_variable_to_shape_map()
    ckpt = tf.train.Checkpoint(model=model)
    try:
        status = ckpt.read(path)
        status.assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.OpError) as err:
        names = ", ".join(sorted(k.split("/.ATTRIBUTES")[0] for k in shapes if "VARIABLE_VALUE" in k)[:5])
        raise UserError(
            f"{what} {path} does not match the {model.arch} network (variable names or shapes differ; "
            f"it holds e.g. {names}): {str(err).splitlines()[0][:300]}"
        ) from err


def load_model(folder: str | Path):
    """(model, info) from a model folder."""
    folder = Path(folder)
    if not (folder / "arch.json").is_file():
        raise UserError(f"{folder} is not a model folder (no arch.json)")
    model = build(read_json(folder / "arch.json", "the architecture file"))
    restore_into(model, folder)
    info = read_json(folder / "info.json", "the model info") if (folder / "info.json").is_file() else {}
    return model, info
