"""Checkpoint files of the three stages, ours and the authors'.

Our format (written atomically with `shared.torch_train.save_atomic`, read with weights_only=True):

    {"format": "dsp_torch", "version": 1,
     "stage": "pretrained" | "group-learned" | "pruned",
     "arch": {"family": "cifar", "depth": 56, "num_classes": 10} | {"family": "imagenet", "name": ...},
     "groups": G or None, "state_dict": {...}, "best_acc": float,
     "pflops": %, "pparams": % (pruned stage), "variant": {...}, "config": {...}}

A pruned model's state dict holds the `group` (G x N) and `mask` (N x C x 1 x 1) buffers of every
prunable conv (see `dsp_module.attach_prune_buffers`). The authors' files, `[state_dict, best_acc]`
lists saved by `cifar_pretrain.py`, `cifar_dsp.py` and `cifar_finetune.py`, load too.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from dsp_torch.dsp_module import attach_prune_buffers
from dsp_torch.models import build_model
from shared.errors import UserError
from shared.torch_train import load_weights, save_atomic

FORMAT = "dsp_torch"
STAGES = ("pretrained", "group-learned", "pruned")


def infer_arch(state_dict: dict, source: str = "checkpoint") -> dict:
    """Model description from the state dict's keys and shapes."""
    if "conv_1_3x3.weight" in state_dict:
        blocks = {int(m.group(1)) for k in state_dict if (m := re.match(r"stage_1\.(\d+)\.", k))}
        if not blocks or "classifier.weight" not in state_dict:
            raise UserError(f"{source}: a CIFAR ResNet state dict without stage_1 blocks or classifier")
        return {
            "family": "cifar",
            "depth": 6 * len(blocks) + 2,
            "num_classes": int(state_dict["classifier.weight"].shape[0]),
        }
    if "conv1.weight" in state_dict and "fc.weight" in state_dict:
        counts = [
            len({int(m.group(1)) for k in state_dict if (m := re.match(rf"layer{i}\.(\d+)\.", k))}) for i in range(1, 5)
        ]
        bottleneck = any(k.endswith("conv3.weight") for k in state_dict)
        names = {((2, 2, 2, 2), False): "resnet18", ((3, 4, 6, 3), False): "resnet34", ((3, 4, 6, 3), True): "resnet50"}
        name = names.get((tuple(counts), bottleneck))
        if name is None:
            raise UserError(f"{source}: unsupported ImageNet ResNet with blocks {counts}")
        return {"family": "imagenet", "name": name, "num_classes": int(state_dict["fc.weight"].shape[0])}
    raise UserError(f"{source}: not a DSP model state dict (no conv_1_3x3 / conv1 weights)")


def save_checkpoint(
    path, *, stage: str, model: nn.Module, arch: dict, groups: int | None = None, best_acc: float | None = None, **extra
) -> Path:
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}")
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    obj = {
        "format": FORMAT,
        "version": 1,
        "stage": stage,
        "arch": arch,
        "groups": groups,
        "state_dict": state,
        "best_acc": best_acc,
        **extra,
    }
    return save_atomic(obj, path)


def load_checkpoint(path, what: str = "checkpoint") -> dict:
    """Our dict, or the authors' [state_dict, acc] list, normalised to our dict form."""
    obj = load_weights(path, what)
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        return obj
    if isinstance(obj, (list, tuple)) and len(obj) == 2 and isinstance(obj[0], dict):
        sd, acc = obj
        has_masks = any(k.endswith(".mask") for k in sd)
        has_groups = any(k.endswith(".group") for k in sd)
        stage = "pruned" if has_masks else ("group-learned" if has_groups else "pretrained")
        groups = next((int(v.shape[0]) for k, v in sd.items() if k.endswith(".group")), None)
        return {
            "format": FORMAT,
            "version": 1,
            "stage": stage,
            "arch": infer_arch(sd, str(path)),
            "groups": groups,
            "state_dict": sd,
            "best_acc": float(acc),
            "source": "authors' format",
        }
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return {
            "format": FORMAT,
            "version": 1,
            "stage": "pretrained",
            "arch": infer_arch(obj, str(path)),
            "groups": None,
            "state_dict": obj,
            "best_acc": None,
            "source": "plain state dict",
        }
    raise UserError(f"{path}: not a DSP checkpoint (expected our checkpoint dict, [state_dict, acc] or a state dict)")


def check_arch(
    ckpt: dict, path, depth: int | None = None, arch_name: str | None = None, num_classes: int | None = None
) -> None:
    arch = ckpt["arch"]
    if num_classes is not None and int(arch.get("num_classes", num_classes)) != num_classes:
        raise UserError(
            f"{path} holds a {arch.get('num_classes')}-class model, but the data has {num_classes} classes: "
            "a checkpoint trained on another data set"
        )
    if depth is not None and arch.get("family") == "cifar" and int(arch["depth"]) != depth:
        raise UserError(f"{path} holds a ResNet-{arch['depth']}, but -l {depth} was given")
    if depth is not None and arch.get("family") != "cifar":
        raise UserError(f"{path} holds an ImageNet {arch.get('name')}, not a CIFAR ResNet-{depth}")
    if arch_name is not None and arch.get("name") != arch_name:
        raise UserError(f"{path} holds a {arch.get('name') or 'CIFAR ResNet'}, but --arch {arch_name} was given")


def model_from_checkpoint(ckpt: dict, source="checkpoint", stage: str | None = None) -> nn.Module:
    """Build the model a checkpoint describes and load it strictly (pruned buffers included)."""
    if stage is not None and ckpt["stage"] != stage:
        raise UserError(f"{source} is a {ckpt['stage']} checkpoint; a {stage} one is expected here")
    model = build_model(ckpt["arch"])
    sd = ckpt["state_dict"]
    if any(k.endswith(".mask") for k in sd):
        attach_prune_buffers(model, int(ckpt["groups"]))
    elif any(k.endswith(".group") for k in sd):
        sd = {k: v for k, v in sd.items() if not k.endswith(".group")}  # group logits: not needed here
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as err:
        raise UserError(f"{source} does not fit a {ckpt['arch']}: {str(err).splitlines()[0][:300]}") from err
    return model
