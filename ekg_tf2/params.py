"""The original's saved-model format and the physically smaller network.

A params file (`res56_cifar10.pkl`, `slimmed_params.pkl`, `trained_params.pkl`) is a pickled dict
{variable name without the leading "ResNet/" -> numpy array}, e.g. `conv/kernel:0` [3,3,3,C],
`BasicBlock1.0/bn3/moving_mean:0` [1,1,1,C], `fc/biases:0` [1,classes]. The architecture is implied
by the shapes: `model_from_params` rebuilds the (slimmed) network from them. Files are read through
the restricted unpickler (numpy arrays and plain values only) and written atomically.

`slim` cuts every kernel, BN and the FC down to the kept channels of the gates (research/ekg.md 1.2):
kernels are rescaled by ||K|| / ||K_kept|| (whole-tensor Frobenius norms) exactly as the masked forward
pass does, BN parameters and moving statistics are sliced but not rescaled.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np

from ekg_tf2.models import ResNet, build_model, param_shapes, widths_from_shapes
from shared import safe_pickle
from shared.errors import UserError
from shared.paths import atomic_write_bytes

HEADER_KEYS = ("__header__", "__version__", "__globals__")  # scipy.io.savemat leftovers in the released pkl


def read_params(path: str | Path) -> dict[str, np.ndarray]:
    """A params dict from a pickle, refusing anything but arrays and plain values."""
    path = Path(path)
    if not path.is_file():
        hint = ""
        if path.name == "trained_param.pkl" and path.with_name("trained_params.pkl").is_file():
            hint = f" (the original README's name; train.py writes {path.with_name('trained_params.pkl')})"
        elif path.name == "trained_param.pkl":
            hint = " (the original README's name; train.py writes trained_params.pkl, plural)"
        raise UserError(f"params file {path} not found{hint}")
    try:
        with open(path, "rb") as f:
            raw = safe_pickle.load(f, encoding="latin1")
    except safe_pickle.ForbiddenPickleError as err:
        raise UserError(f"{path}: {err}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as err:
        raise UserError(f"{path} is not a params pickle: {err}") from None
    if not isinstance(raw, dict):
        raise UserError(f"{path}: expected a dict of name -> array, got {type(raw).__name__}")
    params = {}
    for k, v in raw.items():
        if k in HEADER_KEYS:
            continue
        if not isinstance(k, str) or not isinstance(v, np.ndarray):
            raise UserError(f"{path}: entry {k!r} is not a named array ({type(v).__name__})")
        if not np.issubdtype(v.dtype, np.floating) or not np.all(np.isfinite(v)):
            raise UserError(f"{path}: {k} holds non-finite or non-float values")
        params[k.removeprefix("ResNet/")] = v.astype(np.float32)
    return params


def write_params(path: str | Path, params: dict[str, np.ndarray], overwrite: bool = True) -> Path:
    path = Path(path)
    if path.exists() and not overwrite:
        raise UserError(f"{path} exists; not overwriting a finished result")
    buf = io.BytesIO()
    pickle.dump({k: np.asarray(v, np.float32) for k, v in params.items()}, buf, protocol=4)
    atomic_write_bytes(path, buf.getvalue())
    return path


def model_params(model: ResNet) -> dict[str, np.ndarray]:
    """The model's variables in the original naming (moving statistics read as the replica mean)."""
    return {k: v.numpy() for k, v in model.param_items()}


def assign_params(model: ResNet, params: dict[str, np.ndarray], source: str = "params") -> None:
    """Copy `params` into `model`; a missing, extra or wrongly shaped entry is a UserError naming it."""
    expected = param_shapes(model)
    missing = sorted(set(expected) - set(params))
    extra = sorted(set(params) - set(expected))
    if missing or extra:
        raise UserError(
            f"{source} does not match {model.arch}: "
            + (f"missing {missing[:4]}{' ...' if len(missing) > 4 else ''} " if missing else "")
            + (f"unexpected {extra[:4]}{' ...' if len(extra) > 4 else ''}" if extra else "")
        )
    for name, var in model.param_items():
        if tuple(params[name].shape) != expected[name]:
            raise UserError(
                f"{source}: layer {name} has shape {tuple(params[name].shape)}, expected {expected[name]} "
                f"for {model.arch} with these widths"
            )
        var.assign(params[name])


def model_from_params(arch: str, dataset: str, params: dict[str, np.ndarray], source: str = "params") -> ResNet:
    """Build the (possibly slimmed) network the shapes describe and load the values."""
    shapes = {k: tuple(v.shape) for k, v in params.items()}
    try:
        model = build_model(arch, dataset, widths_from_shapes(shapes))
    except (KeyError, ValueError) as err:
        raise UserError(f"{source} does not describe a {arch}: {err}") from None
    assign_params(model, params, source)
    return model


def load_model(arch: str, dataset: str, path: str | Path) -> ResNet:
    return model_from_params(arch, dataset, read_params(path), str(path))


def _rescaled(full: np.ndarray, kept: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(kept.ravel())
    return kept * (np.linalg.norm(full.ravel()) / max(norm, 1e-12))


def slim(model: ResNet) -> dict[str, np.ndarray]:
    """The params dict of the physically smaller network the gates describe (kernels renormalised)."""
    if not model.gates:
        return model_params(model)
    keep = {g: gate.kept_indices() for g, gate in model.gates.items()}
    params = model_params(model)
    out = {}
    for name, value in params.items():
        label, var = name.rsplit("/", 1)
        if label == "fc":
            if var.startswith("kernel"):
                out[name] = _rescaled(value, value[keep[model.in_group["fc"]], :])
            else:
                out[name] = value
        elif var.startswith("kernel"):
            gin = model.in_group[label]
            k = value[:, :, keep[gin], :] if gin else value
            out[name] = _rescaled(value, k[..., keep[model.out_group[label]]])
        else:  # BN: gamma, beta, moving statistics, sliced on the channel axis
            out[name] = value[..., keep[model.out_group[label]]]
    return out
