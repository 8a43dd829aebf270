"""Removing the channels whose gamma is exactly zero, and rebuilding a physically smaller model.

At the end of every stage (research/ista.md 2.5-2.6) a channel is pruned iff its RAW (not averaged)
gamma is exactly 0.0 (no magnitude threshold). The compact model is built from the averaged (EMA)
weights: the conv's output channel, the BN's four vectors and the next conv's input channel are cut.

A pruned channel outputs the constant c = ReLU(beta) into the next conv, which adds c sum_{h,w} W
to every output position. Two behaviours (`fold`):

- 'paper': the constant is folded into the next BN's moving mean, mean <- mean - c sum_{h,w} W (paper
  Sec. 4.1 step 4). Exact when the next conv has no padding (cnn4's fc1 and logits), approximate with
  padding, where border positions saw fewer than k x k copies of the constant.
- 'released-code' (default, what produced the README numbers): the released code tests gamma == 0 on
  the averaged values, which are ~1e-35 and never exactly 0, so its fold never fires and the channels
  are simply dropped (research/ista.md 6.8).

If every channel of a layer is pruned, the original crashes (research/ista.md 6.10); here the channel
with the largest averaged |gamma| is kept, and the result says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

from ista_tf.models import build_model
from ista_tf.models.layers import BatchNorm, Conv2D

FOLDS = ("released-code", "paper")
BN_VECTORS = ("gamma", "beta", "moving_mean", "moving_variance")


@dataclass
class PruneResult:
    kept: dict[str, list[int]]  # conv label -> kept channel indices (sorted)
    widths_before: list[int]
    widths_after: list[int]
    forced: list[str] = field(default_factory=list)  # layers whose gammas were all zero (one channel kept)

    @property
    def removed(self) -> int:
        return sum(self.widths_before) - sum(self.widths_after)

    def to_json(self) -> dict:
        return {
            "kept": self.kept,
            "widths_before": self.widths_before,
            "widths_after": self.widths_after,
            "forced_one_channel": self.forced,
        }


def kept_channels(model, raw_gammas: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], list[str]]:
    """{label: indices with raw gamma != 0}; a layer with none keeps its largest averaged |gamma|."""
    kept, forced = {}, []
    for unit in model.units():
        gamma = np.asarray(raw_gammas[unit.label])
        keep = np.flatnonzero(gamma != 0.0)
        if keep.size == 0:
            keep = np.array([int(np.argmax(np.abs(unit.bn.gamma.numpy())))])
            forced.append(unit.label)
        kept[unit.label] = keep
    return kept, forced


def _values(model) -> dict[str, dict[str, np.ndarray]]:
    out = {}
    for layer in model.layers():
        if isinstance(layer, Conv2D):
            out[layer.label] = {"kernel": layer.kernel.numpy()}
        else:
            out[layer.label] = {n: getattr(layer, n).numpy() for n in BN_VECTORS if getattr(layer, n) is not None}
    return out


def fold_constant_channels(values: dict, model, kept: dict[str, np.ndarray]) -> None:
    """Paper fold: next BN moving mean -= ReLU(beta_dropped) . sum_{h,w} W_next[:, :, dropped, :]."""
    for unit in model.units():
        dropped = np.setdiff1d(np.arange(unit.bn.channels), kept[unit.label])
        if dropped.size == 0:
            continue
        constant = np.maximum(values[unit.bn.label]["beta"][dropped], 0.0)  # ReLU(beta), gamma = 0
        kernel_sum = values[unit.next_conv.label]["kernel"][:, :, dropped, :].sum(axis=(0, 1))  # [dropped, C_out]
        values[unit.next_bn.label]["moving_mean"] = values[unit.next_bn.label]["moving_mean"] - constant @ kernel_sum


def compress(
    model,
    raw_gammas: dict[str, np.ndarray],
    fold: str = "released-code",
    seed: int = 0,
    compute_dtype: tf.DType = tf.float32,
):
    """A new, physically smaller model holding `model`'s values without the zero-gamma channels.

    `model` carries the values to keep (the averaged weights at the end of a stage); `raw_gammas`
    decides which channels go. Returns (compact model, PruneResult).
    """
    if fold not in FOLDS:
        raise ValueError(f"unknown fold {fold!r}; expected one of {FOLDS}")
    kept, forced = kept_channels(model, raw_gammas)
    values = _values(model)
    if fold == "paper":
        fold_constant_channels(values, model, kept)

    out_keep, in_keep = {}, {}
    for unit in model.units():
        out_keep[unit.conv.label] = out_keep[unit.bn.label] = kept[unit.label]
        in_keep[unit.next_conv.label] = kept[unit.label]

    widths_after = [int(kept[u.label].size) for u in model.units()]
    compact = build_model({"model": model.model_name, "widths": widths_after}, seed=seed, compute_dtype=compute_dtype)
    for src, dst in zip(model.layers(), compact.layers()):
        assert src.label == dst.label
        v = values[src.label]
        if isinstance(dst, Conv2D):
            kernel = v["kernel"]
            if src.label in in_keep:
                kernel = kernel[:, :, in_keep[src.label], :]
            if src.label in out_keep:
                kernel = kernel[..., out_keep[src.label]]
            dst.kernel.assign(kernel)
        elif isinstance(dst, BatchNorm):
            for name, vec in v.items():
                getattr(dst, name).assign(vec[out_keep[src.label]] if src.label in out_keep else vec)
    result = PruneResult(
        kept={k: [int(i) for i in v] for k, v in kept.items()},
        widths_before=list(model.widths),
        widths_after=widths_after,
        forced=forced,
    )
    return compact, result


if __name__ == "__main__":
    raise SystemExit(
        "ista_tf.prune is a library module (channel removal at the end of a stage), not a command: "
        "use python -m ista_tf.cifar10_train or python -m ista_tf.cifar10_eval"
    )
