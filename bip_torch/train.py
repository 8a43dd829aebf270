"""`python -m bip_torch.train`: BiP's train.py (pretrain -> prune -> finetune), same flags and files.

    python -m bip_torch.train --arch resnet18 --exp-mode prune --configs configs/CIFAR10/bip.yml \\
        --layer-type channel --k 0.01 --source-net CKPT --seed 1234 --exp-name NAME

Run order as the original's main(): flags + YAML, result folder, seed, model (masked layers of
--layer-type, prune rate k), which tensors train (mode), data, two SGD optimizers over all parameters
(weights: --lr; scores: the mask optimizer), --source-net, score init (prune mode), --resume, evaluation
of the source net, then per epoch: both learning rates, one epoch of the trainer, test accuracy,
checkpoint (+ model_best by test accuracy), a copy of the run folder to latest_exp.

Result folder (as the original): <result-dir>/<exp-name>/<exp-mode>/<n>--k-<k:.4f>_trainer-<trainer>_
epochs-<E>_arch-<arch>/{setup.log, checkpoint/{checkpoint.pth.tar, model_best.pth.tar}}, n = number of
entries already in <exp-mode>/ (latest_exp included), plus metrics.jsonl, config.json, TensorBoard
events and records/ (ours). A rerun gets a new folder, so nothing finished is overwritten.
Checkpoint keys: epoch, arch, state_dict, best_prec1 (a tensor), optimizer (as the original) plus
mask_optimizer, k, layer_type, trainer, exp_mode, variant (ours; --resume restores both optimizers).
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import time
import warnings
from pathlib import Path

import torch
from torch import nn

from bip_torch import layers as L
from bip_torch.args import parse_args
from bip_torch.bilevel import Backward, Torch1SGD, base_step, bilevel_step, paper_optimizers, paper_step
from bip_torch.data import NUM_CLASSES, load_data
from bip_torch.models import build
from shared.errors import UserError, main_guard
from shared.paths import atomic_write_text, data_root
from shared.results.records import make_record, write_record
from shared.torch_train import (
    MetricsWriter,
    all_reduce_sum,
    autocast,
    broadcast_module_,
    cleanup_distributed,
    load_weights,
    progress,
    save_atomic,
    seed_everything,
    setup_distributed,
)

# README k grid (IMP's 20 % series) -> the sparsity label of the figures' x axis
SPARSITY_LABEL = {
    0.8: "20", 0.64: "36", 0.512: "48.8", 0.41: "59", 0.328: "67.2", 0.262: "73.8", 0.2097: "79", 0.1678: "83.2",
    0.1342: "86.6", 0.1074: "89.3", 0.0859: "91.4", 0.0687: "93.1", 0.055: "94.5", 0.044: "95.6", 0.035: "96.5",
    0.028: "97.2", 0.0225: "97.75", 0.018: "98.2", 0.0144: "98.6", 0.0115: "98.85", 0.0092: "99.1",
}  # fmt: skip
MODEL_NAMES = {"resnet20s": "resnet20", "resnet56s": "resnet56", "vgg16_bn": "vgg16", "resnet18": "resnet18"}


# ----------------------------------------------------------------------------------------------------
# Learning-rate schedules (HYDRA's utils/schedules.py, as BiP calls them)
# ----------------------------------------------------------------------------------------------------


def schedule_lr(name: str, epoch: int, args, base_lr: float | None = None) -> float:
    """lr of `epoch` (0-based). cosine: lr 0.5 (1 + cos((epoch-1)/E pi)) with the original's (epoch-1);
    step: x0.1 from 50 % and x0.01 from 75 % of the epochs; constant. Warm-up epochs use --warmup-lr."""
    lr = args.lr if base_lr is None else base_lr
    if epoch < args.warmup_epochs:
        return args.warmup_lr
    e, n = epoch - args.warmup_epochs, args.epochs
    if name == "cosine":
        return lr * 0.5 * (1 + math.cos((e - 1) / n * math.pi))
    if name == "step":
        return lr if e < 0.5 * n else (0.1 * lr if e < 0.75 * n else 0.01 * lr)
    return lr


def set_lr(optimizer, lr: float) -> None:
    for g in optimizer.param_groups:
        g["lr"] = lr


# ----------------------------------------------------------------------------------------------------
# Loading checkpoints
# ----------------------------------------------------------------------------------------------------


def state_dict_of(obj, path) -> dict:
    """A raw state dict (file ending .pt, as the original) or the `state_dict` of a checkpoint dict."""
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        return obj["state_dict"]
    if isinstance(obj, dict) and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj
    raise UserError(f"{path}: neither a state dict nor a checkpoint with a 'state_dict'")


def load_source(model: nn.Module, path, args) -> dict:
    """Load --source-net. The original uses strict=False and silently ignores any key; we allow only the
    scores to be missing (a dense source) and refuse every other missing, unexpected or mis-shaped key."""
    ckpt = load_weights(path, "--source-net checkpoint")
    sd = state_dict_of(ckpt, path)
    if any(k.startswith("module.") for k in sd):
        sd = {k.removeprefix("module."): v for k, v in sd.items()}
    own = model.state_dict()
    missing = [k for k in own if k not in sd and not k.endswith("popup_scores")]
    unexpected = [k for k in sd if k not in own and not k.endswith("popup_scores")]
    shapes = [k for k in sd if k in own and tuple(sd[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        arch = ckpt.get("arch") if isinstance(ckpt, dict) else None
        detail = "; ".join(
            f"{what}: {', '.join(keys[:4])}{' ...' if len(keys) > 4 else ''}"
            for what, keys in (("missing", missing), ("unexpected", unexpected), ("other shape", shapes))
            if keys
        )
        raise UserError(
            f"--source-net {path} does not fit --arch {args.arch} with {args.num_classes} classes"
            f"{f' (it was saved from {arch})' if arch else ''}: {detail}"
        )
    model.load_state_dict({k: v for k, v in sd.items() if k in own}, strict=False)
    if isinstance(ckpt, dict) and args.exp_mode == "finetune" and not args.baseline:
        _check_mask_settings(ckpt, path, args)
    return ckpt if isinstance(ckpt, dict) else {}


def _check_mask_settings(ckpt: dict, path, args) -> None:
    """Finetuning must use the pruned checkpoint's --k and --layer-type (else another mask is derived)."""
    for key, ours in (("k", float(args.k)), ("layer_type", args.layer_type)):
        theirs = ckpt.get(key)
        if theirs is None:
            warnings.warn(
                f"{path} does not record its {key} (a checkpoint of the original code?): make sure "
                f"--{key.replace('_', '-')} {ours} is what it was pruned with",
                stacklevel=2,
            )
        elif (float(theirs) != ours) if key == "k" else (theirs != ours):
            raise UserError(
                f"--{key.replace('_', '-')} {ours} differs from the {theirs} that {path} was pruned with; "
                "finetuning with another value silently builds a different mask"
            )


# ----------------------------------------------------------------------------------------------------
# The run
# ----------------------------------------------------------------------------------------------------


def run_dir_for(args) -> Path:
    base = Path(args.result_dir) / (args.exp_name or "default") / args.exp_mode
    n = len(list(base.iterdir())) if base.is_dir() else 0
    return base / f"{n}--k-{float(args.k):.4f}_trainer-{args.trainer}_epochs-{args.epochs}_arch-{args.arch}"


def method_of(args) -> str:
    """The method a run's numbers belong to. HYDRA's results (Fig. 3, Table 1) are after fine-tuning, so a
    finetune run from a HYDRA-pruned checkpoint is `hydra` (its prune stage alone is `hydra` too, but
    claims no reported row); a finetune run from anything else is `finetune` (BiP reports no retraining)."""
    if args.baseline:
        return args.baseline
    if args.exp_mode == "pretrain":
        return "dense"
    if args.exp_mode == "finetune":
        return "hydra" if getattr(args, "source_method", None) == "hydra" else "finetune"
    return "bip" if args.trainer == "bilevel" else "hydra"


def variant_of(args) -> dict:
    v = {
        "method": method_of(args),
        "trainer": args.trainer,
        "exp_mode": args.exp_mode,
        "layer_type": args.layer_type,
        "k": float(args.k),
    }
    if args.trainer == "bilevel" and args.exp_mode == "prune":
        v["bip_variant"] = args.bip_variant
        v["accelerate"] = bool(args.accelerate)
    if args.trainer == "base" and args.exp_mode == "prune":
        v["hydra"] = "original" if args.hydra_original else "global (BiP repo)"
    if args.baseline == "imp":
        from bip_torch.baselines import imp_schedule

        v["imp_rounds"] = len(imp_schedule(float(args.k), args.imp_rate))
        v["imp_recipe"] = "inferred: global magnitude, 20 % per round, rewind to the source net"
    return v


def row_of(args, dataset: str) -> str | None:
    ds = {"CIFAR10": "cifar10", "CIFAR100": "cifar100", "TinyImageNet": "tinyimagenet", "ImageNet": "imagenet"}
    ds = ds.get(dataset, {"ImageNetOrigin": "imagenet"}.get(dataset))
    model = MODEL_NAMES.get(args.arch, args.arch.lower())
    if ds is None:
        return None
    method = method_of(args)
    if method == "dense":
        return f"dense/{ds}/{model}"
    reported_stage = method != "finetune" and not (method == "hydra" and args.exp_mode == "prune")
    if args.layer_type == "unstructured" and float(args.k) in SPARSITY_LABEL and reported_stage:
        return f"fig3/{ds}/{model}/{method}/s{SPARSITY_LABEL[float(args.k)]}"
    if args.layer_type == "filter" and method == "bip":
        return f"fig4/{ds}/{model}/bip/filter-{round(100 * (1 - float(args.k)))}"
    return None


class Run:
    """One invocation of train.py."""

    def __init__(self, args):
        self.args = args
        self.ctx = setup_distributed(args.device)
        self.device = self.ctx.device
        if args.deterministic:  # the original's setup_seed: cuDNN off, deterministic algorithms
            torch.backends.cudnn.enabled = False
            torch.backends.cudnn.benchmark = False
            torch.backends.cudnn.deterministic = True
        else:
            torch.backends.cudnn.benchmark = True
        seed_everything(args.seed)
        data_dir = args.data_dir
        if data_dir == "./data" and not Path(data_dir).exists() and data_root() is not None:
            data_dir = str(data_root())
        if args.dataset in NUM_CLASSES and args.num_classes != NUM_CLASSES[args.dataset]:
            raise UserError(
                f"--num-classes {args.num_classes} does not fit --dataset {args.dataset} "
                f"({NUM_CLASSES[args.dataset]} classes); use the dataset's config"
            )
        if args.batch_size % (self.ctx.world_size * args.accum_steps):
            raise UserError(
                f"--batch-size {args.batch_size} must be divisible by processes x --accum-steps "
                f"({self.ctx.world_size} x {args.accum_steps})"
            )
        self.data = load_data(
            args.dataset, data_dir, args.batch_size, args.test_batch_size, self.device, self.ctx,
            normalize=bool(args.normalize), seed=args.seed, train_limit=args.train_limit, test_limit=args.test_limit,
            num_workers=args.num_workers,
        )  # fmt: skip
        self.backward = Backward(self.ctx, args.accum_steps, args.precision)
        self.model = self.build_model()
        self.run_dir: Path | None = None
        self.started = time.time()

    # -- model and optimizers -----------------------------------------------------------------------
    def build_model(self) -> nn.Module:
        a = self.args
        model = build(a.arch, a.layer_type, a.num_classes, float(a.k))
        if a.hydra_original:  # HYDRA: every layer keeps the fraction k of its own weights
            for h in list(model._forward_pre_hooks):
                del model._forward_pre_hooks[h]
        model = model.to(self.device)
        return model.to(memory_format=torch.channels_last) if a.channels_last else model

    def set_mode(self) -> None:
        a, m = self.args, self.model
        if a.exp_mode == "prune":
            L.switch_to_prune(m)
        elif a.exp_mode == "finetune":
            L.switch_to_finetune(m)
        else:
            L.switch_to_bilevel(m)
        if a.freeze_bn:
            L.freeze_bn(m)

    def init_scores(self) -> None:
        """Prune mode after loading the source (notes 1.3 b, 5.14)."""
        a, m = self.args, self.model
        if a.exp_mode != "prune" and a.baseline != "omp":
            return
        if a.baseline == "omp":
            L.copy_scores_from_weights(m)  # one-shot global magnitude; the scores never change
        elif not a.scaled_score_init:
            warnings.warn(
                "prune mode without --scaled-score-init: as the original, every conv/linear weight of the "
                f"source net is multiplied by 1/sqrt(k) = {1 / float(a.k) ** 0.5:.3g} and the scores keep their "
                "random init (the BiP README asks to always pass --scaled-score-init)",
                stacklevel=2,
            )
            L.scale_rand_init(m, float(a.k))
        elif a.hydra_original:
            L.hydra_scaled_score_init(m)
        elif a.trainer == "bilevel" and a.bip_variant == "paper":
            L.copy_scores_from_weights(m)
        else:
            L.alias_scores_to_weights(m)

    # -- files -------------------------------------------------------------------------------------
    def make_run_dir(self) -> None:
        if not self.ctx.is_main:
            return
        self.run_dir = run_dir_for(self.args)
        (self.run_dir / "checkpoint").mkdir(parents=True, exist_ok=False)
        cfg = {k: v for k, v in vars(self.args).items()}
        atomic_write_text(self.run_dir / "config.json", json.dumps(cfg, indent=1, default=str) + "\n")
        with open(self.run_dir / "setup.log", "a") as f:  # the full config goes to the log file only
            f.write(f"command: {' '.join(sys.argv)}\nconfig: {json.dumps(cfg, default=str)}\n")
        self.writer = MetricsWriter(self.run_dir)  # metrics.jsonl + TensorBoard events

    def log(self, text: str) -> None:
        if not self.ctx.is_main:
            return
        print(text, flush=True)
        if self.run_dir is not None:
            with open(self.run_dir / "setup.log", "a") as f:
                f.write(text + "\n")

    def metrics(self, row: dict) -> None:
        if not self.ctx.is_main or self.run_dir is None:
            return
        values = {k: v for k, v in row.items() if isinstance(v, (int, float)) and k != "epoch"}
        fields = {k: v for k, v in row.items() if k not in values and k != "epoch"}
        self.writer.scalars(row["epoch"], values, **fields)
        self.writer.flush()

    def checkpoint(self, epoch: int, best: float, is_best: bool, optimizer, mask_optimizer) -> None:
        if not self.ctx.is_main:
            return
        a = self.args
        state = {
            "epoch": epoch,
            "arch": a.arch,
            "state_dict": self.model.state_dict(),
            "best_prec1": torch.tensor(best),
            "optimizer": optimizer.state_dict(),
            "mask_optimizer": mask_optimizer.state_dict(),
            "k": float(a.k),
            "layer_type": a.layer_type,
            "trainer": a.trainer,
            "exp_mode": a.exp_mode,
            "num_classes": a.num_classes,
            "variant": variant_of(a),
            # which parameters hold a (zero) gradient tensor: torch-1.x SGD decays exactly those, so a
            # resumed run must start with the same ones to continue as if never interrupted
            "has_grad": [p.grad is not None for p in self.model.parameters()],
        }
        ck = self.run_dir / "checkpoint"
        save_atomic(state, ck / "checkpoint.pth.tar")
        if is_best:
            shutil.copyfile(ck / "checkpoint.pth.tar", ck / "model_best.pth.tar")
        if a.save_dense:
            dense = {k: v for k, v in self.dense_state().items()}
            save_atomic({**state, "state_dict": dense}, ck / "checkpoint_dense.pth.tar")
        latest = self.run_dir.parent / "latest_exp"
        tmp = self.run_dir.parent / ".latest_exp.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(self.run_dir, tmp)
        shutil.rmtree(latest, ignore_errors=True)
        tmp.rename(latest)

    def mark_finished(self) -> None:
        """A FINISHED file in the run folder and in latest_exp: the scripts skip what is done."""
        if self.ctx.is_main and self.run_dir is not None:
            for d in (self.run_dir, self.run_dir.parent / "latest_exp"):
                if d.is_dir():
                    atomic_write_text(d / "FINISHED", f"{time.time() - self.started:.1f} s\n")

    @torch.no_grad()
    def dense_state(self) -> dict:
        """State dict with every mask applied to its weight (the masks as the forward builds them, not the
        original's per-tensor `subnet_to_dense`, which is wrong for global and structured masks)."""
        masks = L.hard_masks(self.model)
        sd = {k: v.clone() for k, v in self.model.state_dict().items() if not k.endswith("popup_scores")}
        for name, mask in masks.items():
            sd[f"{name}.weight"] = sd[f"{name}.weight"] * mask
        return sd

    # -- evaluation and epochs ----------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self) -> tuple[float, float]:
        model = self.model
        was = model.training
        model.eval()
        correct = total = loss = 0.0
        for x, y in self.data.test:
            with autocast(self.device, self.args.precision):
                out = model(x)
            loss += float(nn.functional.cross_entropy(out.float(), y, reduction="sum"))
            correct += float((out.argmax(1) == y).sum())
            total += y.numel()
        model.train(was)
        return 100.0 * correct / total, loss / total

    def train_epoch(self, epoch: int, optimizers) -> dict:
        a, model = self.args, self.model
        model.train()
        self.data.train.set_epoch(epoch)
        self.data.val.set_epoch(epoch)
        bar = progress(len(self.data.train), f"epoch {epoch}", enabled=self.ctx.is_main)
        losses, correct, seen = [], 0.0, 0
        bilevel = a.exp_mode == "prune" and a.trainer == "bilevel"
        pairs = zip(self.data.train, self.data.val) if bilevel else ((b, (None, None)) for b in self.data.train)
        for (xu, yu), (xl, yl) in pairs:
            if bilevel and a.bip_variant == "paper":
                loss, logits = paper_step(model, *optimizers, (xl, yl), (xu, yu), self.backward, a.lr2)
            elif bilevel:
                loss, logits = bilevel_step(
                    model, *optimizers, (xl, yl), (xu, yu), self.backward, a.lr2, accelerate=a.accelerate
                )
            else:
                loss, logits = base_step(model, optimizers[0], (xu, yu), self.backward)
            if logits is not None:
                correct += float((logits.argmax(1) == yu).sum())
                seen += yu.numel()
            losses.append(loss)
            bar.set_postfix_str(f"loss {loss:.3f}", refresh=False)
            bar.update()
        bar.close()
        # BN running statistics are rank-local; rank 0's are the ones every rank keeps
        broadcast_module_(model, self.ctx)
        mean = all_reduce_sum([sum(losses) / max(len(losses), 1)], self.ctx)[0] / self.ctx.world_size
        out = {"train_loss": mean}
        if seen:
            c, n = all_reduce_sum([correct, float(seen)], self.ctx)
            out["train_acc"] = 100.0 * c / n
        return out

    def optimizers(self):
        a, m = self.args, self.model
        opt = Torch1SGD(m.parameters(), lr=a.lr, momentum=a.momentum, weight_decay=a.wd)
        mask_opt = Torch1SGD(m.parameters(), lr=a.mask_lr, momentum=a.momentum, weight_decay=a.wd)
        return opt, mask_opt

    def fit(self, opt, mask_opt, start_epoch=0, best=0.0, tag="") -> dict:
        a = self.args
        paper = a.exp_mode == "prune" and a.trainer == "bilevel" and a.bip_variant == "paper"
        optimizers = paper_optimizers(self.model, a.lower_lr, a.upper_lr) if paper else (opt, mask_opt)
        acc = best
        for epoch in range(start_epoch, a.epochs + a.warmup_epochs):
            lr = schedule_lr(a.lr_schedule, epoch, a)
            set_lr(opt, lr)
            set_lr(mask_opt, schedule_lr(a.mask_lr_schedule, epoch, a))  # the `mask_lr` quirk: args.lr
            t0 = time.time()
            row = self.train_epoch(epoch, optimizers)
            acc, test_loss = self.evaluate()
            is_best = acc > best
            best = max(best, acc)
            sp = L.sparsity_report(self.model)["sparsity"]
            row = {"epoch": epoch, **row, "test_acc": acc, "test_loss": test_loss, "lr": lr,
                   "mask_lr": mask_opt.param_groups[0]["lr"], "sparsity": sp, "seconds": time.time() - t0}  # fmt: skip
            self.metrics({**row, "phase": tag} if tag else row)
            self.log(
                f"{tag}epoch {epoch + 1}/{a.epochs}: loss {row['train_loss']:.3f}, test acc {acc:.2f} % "
                f"(best {best:.2f}), sparsity {100 * sp:.2f} %, lr {lr:.5f}, {row['seconds']:.1f} s"
            )
            self.checkpoint(epoch + 1, best, is_best, opt, mask_opt)
            if a.stop_after_epoch and epoch + 1 >= a.stop_after_epoch and epoch + 1 < a.epochs:
                self.log("stopping early (--stop-after-epoch); resume with --resume <checkpoint>")
                return {"best": best, "final": acc, "interrupted": True}
        return {"best": best, "final": acc, "interrupted": False}

    def record(self, result: dict, extra_metrics: dict | None = None) -> Path | None:
        if not self.ctx.is_main:
            return None
        a = self.args
        rep = L.sparsity_report(self.model)
        full_recipe = (
            not a.train_limit
            and not a.test_limit
            and a.epochs >= {"pretrain": 200, "prune": 100, "finetune": 100}[a.exp_mode]
        )
        if a.hydra_original and a.exp_mode == "prune":
            full_recipe = not a.train_limit and not a.test_limit and a.epochs >= 20
        kind = "reproduction" if (self.data.full_size and full_recipe) else "smoke"
        metrics = {"top1": result["final"], "top1_best": result["best"], "sparsity_pct": 100 * rep["sparsity"]}
        metrics.update(extra_metrics or {})
        rec = make_record(
            "bip",
            row_of(a, a.dataset),
            kind,
            metrics=metrics,
            data=self.data.identity,
            variant=variant_of(a),
            convention="weights-only",
            seed=a.seed,
            config={k: v for k, v in vars(a).items()},
            timings={"train_seconds": time.time() - self.started},
            frameworks=("torch",),
            device=str(self.device),
            run_dir=str(self.run_dir),
            env_extra={"world_size": self.ctx.world_size, "accum_steps": a.accum_steps, "precision": a.precision},
        )
        path = write_record(rec, Path(a.records) if a.records else self.run_dir / "records")
        self.log(f"run record: {path}")
        return path


def run(args) -> dict:
    r = Run(args)
    try:
        return _run(r)
    finally:
        if getattr(r, "writer", None) is not None:
            r.writer.close()
        cleanup_distributed()


def _run(r: Run) -> dict:
    a = r.args
    r.set_mode()
    opt, mask_opt = r.optimizers()
    if a.source_net:
        source = load_source(r.model, a.source_net, a)
        a.source_method = (source.get("variant") or {}).get("method")  # a finetuned HYDRA net stays `hydra`
    r.init_scores()
    start, best = 0, 0.0
    if a.resume:
        ckpt = load_weights(a.resume, "--resume checkpoint")
        if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
            raise UserError(f"--resume {a.resume}: not a checkpoint.pth.tar (no 'state_dict')")
        if ckpt.get("arch") not in (None, a.arch):
            raise UserError(f"--resume {a.resume} is a checkpoint of {ckpt['arch']}, not --arch {a.arch}")
        _check_mask_settings(ckpt, a.resume, a)
        r.model.load_state_dict(ckpt["state_dict"], strict=True)  # in place: aliased scores stay aliased
        opt.load_state_dict(ckpt["optimizer"])
        if "mask_optimizer" in ckpt:
            mask_opt.load_state_dict(ckpt["mask_optimizer"])
        else:
            warnings.warn(
                f"{a.resume} has no mask_optimizer state (the original's format): its momentum restarts", stacklevel=2
            )
        for p, had in zip(r.model.parameters(), ckpt.get("has_grad", [])):
            if had and p.grad is None:
                p.grad = torch.zeros_like(p)
        start, best = int(ckpt["epoch"]), float(ckpt["best_prec1"])
    r.make_run_dir()
    r.log(f"model {a.arch} ({a.layer_type}, k = {float(a.k)}), {sum(p.numel() for p in r.model.parameters()):,} "
          f"parameter entries; variant {variant_of(a)}")  # fmt: skip
    if a.exp_mode == "finetune" or a.evaluate:
        acc, _ = r.evaluate()
        r.log(f"source net: test acc {acc:.2f} %, sparsity {100 * L.sparsity_report(r.model)['sparsity']:.2f} %")
        if a.evaluate:
            return {"best": acc, "final": acc, "run_dir": r.run_dir}
    if a.baseline == "imp":
        from bip_torch.baselines import run_imp

        result = run_imp(r, opt, mask_opt)
    else:
        result = r.fit(opt, mask_opt, start, best)
    if not result["interrupted"]:
        if a.baseline != "imp":  # IMP records each round itself
            r.record(result)
        r.mark_finished()
    result["run_dir"] = r.run_dir
    result["sparsity"] = L.sparsity_report(r.model)["sparsity"]
    return result


@main_guard
def main(argv=None) -> int:
    run(parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
