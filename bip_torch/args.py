"""The flags of BiP's args.py (same names, defaults and meaning), our additions, and the YAML rule.

YAML (`--configs FILE`): every key overrides the argparse default; a flag literally present on the
command line (`--lr 0.01` or `--lr=0.01`) wins over the YAML; keys that are not flags are kept as
attributes. As in the original, a `store_true` flag set True in the YAML cannot be switched off from
the command line. FILE is read as given, else relative to this package (`configs/CIFAR10/bip.yml`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from bip_torch.bilevel import BIP_VARIANTS
from bip_torch.data import DATASETS
from bip_torch.layers import LAYER_TYPES
from bip_torch.models import ARCHS
from shared.errors import UserError, check_range

PACKAGE = Path(__file__).resolve().parent
TRAINERS = ("base", "bilevel", "bilevel_finetune")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bip_torch.train",
        description="BiP / HYDRA pruning with the interface of OPTML-Group/BiP train.py "
        "(pretrain -> prune -> finetune).",
    )
    a = p.add_argument
    a("--configs", default=None, help="YAML config; its values override the defaults, command-line flags win")
    a("--exp-mode", choices=["pretrain", "prune", "finetune"], help="training mode")
    a("--trainer", default="base", choices=TRAINERS, help="base (HYDRA, one optimizer) | bilevel (BiP)")
    a("--dataset", choices=DATASETS, help="CIFAR10 | CIFAR100 | TinyImageNet | ImageNet (LMDB) | ImageNetOrigin")
    a("--k", type=float, default=1.0, help="kept fraction (unstructured: global; filter/channel: per layer)")
    a("--normalize", action="store_true", default=False, help="per-channel Normalize in the transform")
    a("--scaled-score-init", action="store_true", default=False, help="prune mode: scores := the weights")
    a("--source-net", default=None, help="checkpoint to prune (pretrained) or finetune (pruned)")
    a("--arch", choices=sorted(ARCHS), help="architecture, names as in the original models/__init__.py")
    a("--resume", default="", help="checkpoint.pth.tar to resume (both optimizers are restored)")
    a("--layer-type", choices=LAYER_TYPES, help="dense | unstructured | filter | channel")
    a("--exp-name", default=None, help="experiment folder name under --result-dir")
    a("--seed", type=int, default=1234, help="random seed (default 1234)")
    a("--result-dir", default="./trained_models", help="root of the result folders")
    a("--num-classes", type=int, default=10)
    a("--batch-size", type=int, default=128, help="global batch size (over processes and micro-batches)")
    a("--test-batch-size", type=int, default=128)
    a("--num-workers", type=int, default=2, help="loader workers (TinyImageNet / ImageNet folders)")
    a("--data-dir", default="./data", help="dataset folder (default ./data; also $PRUNING_DATA_DIR)")
    a("--image-dim", type=int, default=32, help="accepted, unused (as in the original)")
    a("--epochs", type=int, default=100)
    a("--optimizer", default="sgd", choices=["sgd", "adam", "rmsprop"])
    a("--wd", type=float, default=5e-4, help="weight decay of both optimizers")
    a("--lr", type=float, default=0.1, help="learning rate (also drives the mask lr, see --mask-lr)")
    a("--mask-lr", type=float, default=0.1, help="as in the original: only seeds the mask optimizer (overwritten)")
    a("--mask-lr-schedule", default="cosine", choices=["cosine", "step"], help="shape of the mask lr schedule")
    a("--lr-schedule", default="cosine", choices=["step", "cosine", "constant"])
    a("--momentum", type=float, default=0.9)
    a("--warmup-epochs", type=int, default=0)
    a("--warmup-lr", type=float, default=0.1)
    a("--save-dense", action="store_true", default=False, help="also write *_dense.pth.tar (masks applied)")
    a("--evaluate", action="store_true", default=False, help="evaluate the model and exit")
    a("--val-method", default="base", choices=["base"])
    a("--print-freq", type=int, default=10)
    a("--lr2", type=float, default=0.1, help="implicit-gradient coefficient (configs: 1e-4)")
    a("--accelerate", action="store_true", default=False, help="bilevel: score step, then weight step, no IG")
    a("--scores-init-type", default=None, help="accepted; None = leave the scores alone (as the original)")
    a("--scale-rand-init", action="store_true", default=False, help="accepted, unused (as the original)")
    a("--freeze-bn", action="store_true", default=False, help="BN affine parameters are not trained")
    g = p.add_argument_group("additions (not in the original)")
    g.add_argument("--bip-variant", default="code", choices=BIP_VARIANTS, help="code (released, default) | paper (A1)")
    g.add_argument("--lower-lr", type=float, default=0.01, help="--bip-variant paper: lower-level lr (alpha)")
    g.add_argument("--upper-lr", type=float, default=0.1, help="--bip-variant paper: upper-level lr (beta)")
    g.add_argument(
        "--hydra-original",
        action="store_true",
        help="trainer base as HYDRA published it: layer-wise k, scaled score copy, 20 prune epochs",
    )
    g.add_argument("--baseline", choices=["omp", "imp"], help="omp: global magnitude + finetune; imp: rounds")
    g.add_argument("--imp-rate", type=float, default=0.2, help="IMP: share of the remaining weights pruned per round")
    g.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    g.add_argument("--accum-steps", type=int, default=1, help="micro-batches per step (gradient accumulation)")
    g.add_argument("--precision", choices=["fp32", "bf16"], default="fp32", help="bf16 autocast (GPU)")
    g.add_argument("--deterministic", action="store_true", help="the original's setting: cuDNN off, deterministic")
    g.add_argument("--channels-last", action="store_true", help="channels_last memory format (GPU speed)")
    g.add_argument("--train-limit", type=int, help="use only this many training images (class-balanced)")
    g.add_argument("--test-limit", type=int, help="evaluate on the first N test images only (smoke runs)")
    g.add_argument("--records", help="folder for the run record (default <run dir>/records)")
    g.add_argument("--stop-after-epoch", type=int, help=argparse.SUPPRESS)
    return p


def _given_on_cli(parser: argparse.ArgumentParser, argv: list[str]) -> set[str]:
    flags = {a.split("=", 1)[0] for a in argv if a.startswith("-")}
    return {act.dest for act in parser._actions if any(o in flags for o in act.option_strings)}


def _config_path(name: str) -> Path:
    for cand in (Path(name), PACKAGE / name, PACKAGE / "configs" / name):
        if cand.is_file():
            return cand
    raise UserError(f"--configs {name}: no such file (looked here and under {PACKAGE / 'configs'})")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.configs:
        path = _config_path(args.configs)
        try:
            cfg = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise UserError(f"--configs {path}: not valid YAML ({err})") from err
        if not isinstance(cfg, dict):
            raise UserError(f"--configs {path}: expected a mapping of flag names to values")
        given = _given_on_cli(parser, argv)
        for key, value in cfg.items():
            dest = key.replace("-", "_")
            if dest not in given:
                setattr(args, dest, value)
        args.configs = str(path)
    if args.hydra_original and "epochs" not in _given_on_cli(parser, argv) and args.exp_mode == "prune":
        args.epochs = 20  # HYDRA's README prunes for 20 epochs
    validate(args)
    return args


def validate(args) -> None:
    for name in ("exp_mode", "arch", "layer_type", "dataset"):
        if getattr(args, name, None) is None:
            raise UserError(f"--{name.replace('_', '-')} is required (on the command line or in --configs)")
    if args.arch not in ARCHS:
        raise UserError(f"--arch must be one of {', '.join(ARCHS)}, got {args.arch!r}")
    if args.layer_type not in LAYER_TYPES:
        raise UserError(f"--layer-type must be one of {', '.join(LAYER_TYPES)}, got {args.layer_type!r}")
    if args.dataset not in DATASETS:
        raise UserError(f"--dataset must be one of {', '.join(DATASETS)}, got {args.dataset!r}")
    if args.trainer == "bilevel_finetune":
        raise UserError(
            "--trainer bilevel_finetune is listed by the original but has no module there (ImportError); "
            "finetune with --trainer base"
        )
    if args.trainer not in ("base", "bilevel"):
        raise UserError(f"--trainer must be base or bilevel, got {args.trainer!r}")
    check_range("--k", float(args.k), 0, 1, low_open=True)
    check_range("--epochs", args.epochs, 1, 10**6)
    check_range("--batch-size", args.batch_size, 1, 10**6)
    for name in ("lr", "wd", "lr2", "momentum", "mask_lr", "lower_lr", "upper_lr"):
        v = float(getattr(args, name))
        if v != v or v in (float("inf"), float("-inf")) or v < 0:
            raise UserError(f"--{name.replace('_', '-')} must be a finite number >= 0, got {v}")
    check_range("--accum-steps", args.accum_steps, 1, 10**4)
    if args.optimizer != "sgd":
        raise UserError(f"--optimizer {args.optimizer}: only sgd is implemented (every config uses it)")
    for flag in ("source_net", "resume"):
        path = getattr(args, flag)
        if path and not Path(path).is_file():
            raise UserError(f"--{flag.replace('_', '-')} {path} does not exist")
    if args.resume and args.source_net:
        raise UserError("--resume and --source-net exclude each other (as in the original)")
    if args.exp_mode in ("prune", "finetune") and not (args.source_net or args.resume):
        if args.baseline != "imp":
            raise UserError(f"--exp-mode {args.exp_mode} needs --source-net (or --resume)")
    if args.exp_mode != "pretrain" and args.layer_type == "dense":
        raise UserError(f"--exp-mode {args.exp_mode} needs a masked --layer-type (unstructured, filter, channel)")
    if args.exp_mode == "pretrain" and args.layer_type != "dense" and float(args.k) != 1.0:
        raise UserError("--exp-mode pretrain trains the dense net: use --k 1.0")
    if args.baseline and args.layer_type != "unstructured":
        raise UserError(
            f"--baseline {args.baseline} prunes unstructured (global magnitude): use --layer-type unstructured"
        )
    if args.baseline == "imp":
        check_range("--imp-rate", args.imp_rate, 0, 1, low_open=True, high_open=True)
