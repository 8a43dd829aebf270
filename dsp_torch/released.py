"""The authors' released CIFAR models (TorchScript, packed form) -> this project's masked model.

A released file is the traced multi-branch network of the authors' packer: per residual block,
`layers_a` (one conv+BN+ReLU per branch), `sampler_a` (each branch's input channel indices),
`concat_a`, `layers_b` (conv+BN per branch), `sampler_b` (branch inputs, indices into the
concatenated conv_a outputs) and `residual` (each branch's output channels, index_add-ed into the
shortcut). The index tensors are constants of the traced code.

The conversion rebuilds a dense option-B CifarResNet whose conv_a filters are the concatenated
branch outputs (in concatenation order; unused filters are dead), places every branch's weights at
its (output, input) positions, copies the BNs, and sets the pruned-model buffers: `mask` = the
kernel pairs that exist, `group` = one-hot branch membership of the conv_a filters (conv_b filters:
their branch). Dead units get BN gamma = beta = 0, so they output exactly 0 as in the packed model.

Loading a TorchScript archive runs TorchScript code from the file: use files from trusted sources only.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from dsp_torch.dsp_module import attach_prune_buffers, prunable_convs
from dsp_torch.models import CifarResNet
from shared.errors import UserError

STAGE_WIDTHS = {"stage_1": 16, "stage_2": 32, "stage_3": 64}


@dataclass
class Converted:
    model: CifarResNet
    arch: dict
    groups: int
    sha256: str
    script: torch.jit.ScriptModule


def load_released(path) -> torch.jit.ScriptModule:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"released model {path} does not exist")
    try:
        return torch.jit.load(str(path), map_location="cpu").eval()
    except Exception as err:
        raise UserError(f"{path} is not a loadable TorchScript archive: {str(err).splitlines()[0][:200]}") from err


def _constants(module) -> list[list[int]]:
    """The index constants a packed submodule uses, in the order its code uses them."""
    code, consts = module.code_with_constants
    return [consts.const_mapping[name].flatten().tolist() for name in re.findall(r"CONSTANTS\.(c\d+)", code)]


def _children(module) -> list:
    return [m for _, m in module.named_children()]


def _copy_bn(dst: nn.BatchNorm2d, rows, src) -> None:
    rows = torch.as_tensor(rows, dtype=torch.long)
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(dst, name)[rows] = getattr(src, name).detach()


@torch.no_grad()
def convert_released(path) -> Converted:
    script = load_released(path)
    try:
        return _convert(script, Path(path))
    except (AttributeError, RuntimeError, KeyError, IndexError, ValueError) as err:
        raise UserError(
            f"{path} is not a packed DSP CIFAR ResNet (as the authors' pack_model.py writes): "
            f"{str(err).splitlines()[0][:200]}"
        ) from err


def _convert(script, path: Path) -> Converted:
    n_blocks = len(_children(script.stage_1))
    depth = 6 * n_blocks + 2
    num_classes = int(script.classifier.weight.shape[0])
    model = CifarResNet(depth, num_classes).eval()
    model.conv_1_3x3.weight.copy_(script.conv_1_3x3.weight)
    model.bn_1.load_state_dict(script.bn_1.state_dict())
    model.classifier.load_state_dict(script.classifier.state_dict())
    max_branches = 1
    assignments = []  # per prunable conv, the branch index of each filter (-1: dead)
    for stage_name, width in STAGE_WIDTHS.items():
        for packed, block in zip(_children(getattr(script, stage_name)), getattr(model, stage_name)):
            assignments += _convert_block(packed, block, width)
            max_branches = max(max_branches, len(_children(packed.layers_a)), len(_children(packed.layers_b)))
    groups = max_branches
    attach_prune_buffers(model, groups)
    for (_, conv), branch_of in zip(prunable_convs(model), assignments):
        conv.mask.copy_((conv.weight.abs().sum(dim=(2, 3)) > 0).float()[:, :, None, None])
        conv.group.zero_()
        alive = branch_of >= 0
        conv.group[branch_of[alive], torch.nonzero(alive).flatten()] = 1.0
        conv.group[0, ~alive] = 1.0
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    arch = {"family": "cifar", "depth": depth, "num_classes": num_classes}
    return Converted(model, arch, groups, sha, script)


def _convert_block(packed, block, width: int) -> list[torch.Tensor]:
    """Fill one dense block from one packed block; return the branch index of each conv_a / conv_b filter."""
    for conv, bn in ((block.conv_a, block.bn_a), (block.conv_b, block.bn_b)):
        conv.weight.zero_()
        for name in ("weight", "bias", "running_mean"):
            getattr(bn, name).zero_()
        bn.running_var.fill_(1.0)
    if block.downsample is not None:
        block.downsample.load_state_dict(packed.downsample.state_dict())
    branch_a = torch.full((width,), -1, dtype=torch.long)
    branch_b = torch.full((width,), -1, dtype=torch.long)
    # conv_a: branch j's filters occupy the next rows of the concatenation.
    pos = 0
    for j, (inputs, seq) in enumerate(zip(_constants(packed.sampler_a), _children(packed.layers_a))):
        conv, bn = _children(seq)[:2]
        rows = list(range(pos, pos + conv.weight.shape[0]))
        block.conv_a.weight[rows[0] : rows[-1] + 1, inputs] = conv.weight
        _copy_bn(block.bn_a, rows, bn)
        branch_a[rows] = j
        pos += len(rows)
    # conv_b: branch j reads concatenated conv_a outputs and adds into its original output channels.
    for j, (inputs, outputs, seq) in enumerate(
        zip(_constants(packed.sampler_b), _constants(packed.residual), _children(packed.layers_b))
    ):
        conv, bn = _children(seq)[:2]
        for r, out in enumerate(outputs):
            block.conv_b.weight[out, inputs] = conv.weight[r]
        _copy_bn(block.bn_b, outputs, bn)
        branch_b[outputs] = j
    return [branch_a, branch_b]


def main(argv=None) -> int:
    """python -m dsp_torch.released --ckpt resnet56_g4.pt --save resnet56_g4_pruned.pkl

    Convert a released model into this project's pruned-checkpoint format (masked dense model plus
    `group` / `mask` buffers), for dsp_torch.eval / flops / pack_model or further fine-tuning."""
    import argparse

    from dsp_torch.checkpoints import save_checkpoint
    from shared.errors import main_guard

    @main_guard
    def run(argv):
        p = argparse.ArgumentParser(
            prog="python -m dsp_torch.released",
            description=main.__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        p.add_argument("--ckpt", required=True, help="the authors' released TorchScript model")
        p.add_argument("--save", required=True, help="where to write the pruned checkpoint (.pkl)")
        args = p.parse_args(argv)
        if Path(args.save).exists():
            raise UserError(f"{args.save} exists; not overwriting it")
        conv = convert_released(args.ckpt)
        save_checkpoint(
            args.save,
            stage="pruned",
            model=conv.model,
            arch=conv.arch,
            groups=conv.groups,
            source=f"released:{Path(args.ckpt).name}:sha256:{conv.sha256}",
        )
        print(f"converted {args.ckpt} (ResNet-{conv.arch['depth']}, {conv.groups} branches max) -> {args.save}")
        return 0

    return run(argv)


if __name__ == "__main__":
    import sys

    sys.exit(main())
