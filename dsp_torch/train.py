"""The training loop of the three DSP stages: distribution, accumulation, precision, resume, records.

Every stage (cifar_pretrain, cifar_dsp, cifar_finetune, and the ImageNet variants) runs
`StageRunner.fit()` with its own optimizer, schedule and step hooks:

    Setup (torchrun / single process, seeds) -> Data (device-resident CIFAR) -> Model -> Optimizer &
    schedule -> Resume -> per step: hooks.before_step, forward/backward over micro-batches
    (DDP no_sync), optimizer.step, hooks.after_step -> per epoch: test accuracy, best model, resumable
    state -> Write results (checkpoint, metrics.jsonl, config.json, run record).

Files of a stage with output `<save_dir>/<name>.pkl` (the authors' names): the best checkpoint
`<name>.pkl`, `<name>.pkl.state.pt` (resumable state after the last finished epoch),
`<name>.pkl.metrics.jsonl` and `<name>.pkl.config.json`. A finished stage is not rerun (pass
--overwrite); an interrupted one resumes from its state file.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from dsp_torch.data import cifar_loaders
from shared.demo_data import demo_dataset
from shared.errors import UserError, check_range
from shared.paths import atomic_write_text
from shared.results.records import make_record, write_record
from shared.torch_train import (
    DistContext,
    accumulate_backward,
    all_reduce_sum,
    autocast,
    cleanup_distributed,
    load_weights,
    progress,
    save_atomic,
    seed_everything,
    setup_distributed,
    wrap_ddp,
)

# ----------------------------------------------------------------------------------------------------
# Command-line flags common to every stage (the authors' names first, then our additions)
# ----------------------------------------------------------------------------------------------------


def add_common_args(p: argparse.ArgumentParser, *, epochs: int, lr: float, wd: float, batch_size: int = 128):
    p.set_defaults(recipe_epochs=epochs)  # a run shorter than the recipe is recorded as a smoke run
    p.add_argument(
        "--save_dir",
        "--save-dir",
        dest="save_dir",
        default="./cifarmodel/",
        help="folder for checkpoints and logs (the authors' default ./cifarmodel/)",
    )
    p.add_argument(
        "-d",
        "--device",
        default="0",
        help="the authors' GPU id; it is part of the group-learned / pruned file names (default 0)",
    )
    p.add_argument(
        "-j",
        "--workers",
        type=int,
        default=4,
        help="accepted for compatibility; CIFAR batches are built on the device, no workers",
    )
    p.add_argument("--epochs", type=int, default=epochs, help=f"number of epochs (default {epochs})")
    p.add_argument(
        "-b",
        "--batch-size",
        type=int,
        default=batch_size,
        help=f"global mini-batch size over all processes and micro-batches (default {batch_size})",
    )
    p.add_argument("--lr", "--learning-rate", type=float, default=lr, help=f"initial learning rate (default {lr})")
    p.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (default 0.9)")
    p.add_argument("--wd", "--weight-decay", dest="wd", type=float, default=wd, help=f"weight decay (default {wd})")
    g = p.add_argument_group("additions (not in the original scripts)")
    g.add_argument(
        "--data-dir",
        help="folder holding CIFAR-10 (cifar-10-batches-py/ or its parent); "
        "default $PRUNING_DATA_DIR; without either the embedded digits set is used",
    )
    g.add_argument(
        "--dataset", choices=["cifar10", "digits"], help="default: cifar10 when a data folder is known, else digits"
    )
    g.add_argument("--device-type", default="auto", help="auto | cpu | cuda | cuda:N (default auto)")
    g.add_argument("--seed", type=int, default=0, help="seed of initialisation, data order and augmentation")
    g.add_argument("--accum-steps", type=int, default=1, help="micro-batches per step (gradient accumulation)")
    g.add_argument("--precision", choices=["fp32", "bf16"], default="fp32", help="bf16 autocast (GPU)")
    g.add_argument("--channels-last", action="store_true", help="channels_last memory format (GPU speed)")
    g.add_argument("--compile", action="store_true", help="torch.compile the forward pass (GPU speed)")
    g.add_argument("--train-limit", type=int, help="use only this many training images (class-balanced)")
    g.add_argument("--records", help="folder for the run record (default <save_dir>/records)")
    g.add_argument("--overwrite", action="store_true", help="train again although the stage has finished")
    g.add_argument("--stop-after-epoch", type=int, help=argparse.SUPPRESS)  # simulates an interruption


def validate_common(args) -> None:
    check_range("--epochs", args.epochs, 1, 10**6)
    check_range("--batch-size", args.batch_size, 1, 10**6)
    check_range("--lr", args.lr, 0, 10, low_open=True)
    check_range("--momentum", args.momentum, 0, 1, high_open=True)
    check_range("--wd", args.wd, 0, 1)
    check_range("--accum-steps", args.accum_steps, 1, 10**4)


# ----------------------------------------------------------------------------------------------------
# The runner
# ----------------------------------------------------------------------------------------------------


@dataclass
class StepHooks:
    before_step: Callable[[], None] = lambda: None
    after_step: Callable[[torch.Tensor, torch.Tensor], None] = lambda x, y: None
    describe: Callable[[], str] = lambda: ""


@dataclass
class EpochResult:
    epoch: int
    train_loss: float
    test_acc: float
    test_loss: float
    lr: float
    seconds: float
    extra: dict = field(default_factory=dict)


class StageRunner:
    """Owns the process group, the data, the output files and the epoch loop of one stage."""

    def __init__(self, args, stage: str, output_name: str, variant: dict | None = None, data=None):
        validate_common(args)
        self.args, self.stage, self.variant = args, stage, dict(variant or {})
        self.ctx: DistContext = setup_distributed(args.device_type)
        self.device = self.ctx.device
        seed_everything(args.seed)
        self.save_dir = Path(args.save_dir)
        self.out_path = self.save_dir / output_name
        self.state_path = self.out_path.with_name(self.out_path.name + ".state.pt")
        self.metrics_path = self.out_path.with_name(self.out_path.name + ".metrics.jsonl")
        self.config_path = self.out_path.with_name(self.out_path.name + ".config.json")
        dataset = getattr(args, "dataset", None) or demo_dataset(args.data_dir)
        if args.batch_size % (self.ctx.world_size * args.accum_steps):
            raise UserError(
                f"--batch-size {args.batch_size} must be divisible by processes x --accum-steps "
                f"({self.ctx.world_size} x {args.accum_steps})"
            )
        if data is None:  # CIFAR-10 / digits, held on the device
            data = cifar_loaders(
                dataset,
                args.data_dir,
                args.batch_size,
                self.device,
                self.ctx,
                seed=args.seed,
                train_limit=args.train_limit,
            )
        self.data = data
        self.criterion = nn.CrossEntropyLoss()
        self.started = time.time()

    # -- files ----------------------------------------------------------------------------------
    def finished_already(self) -> bool:
        """True (and says so) when this stage's output is final; refuses to clobber foreign files."""
        if self.args.overwrite:
            return False
        if self.state_path.is_file():
            state = load_weights(self.state_path, "resume state")
            if state.get("finished"):
                self.log(
                    f"{self.out_path} is already finished (best test accuracy {state.get('best_acc'):.2f}); "
                    "pass --overwrite to train again"
                )
                return True
            return False
        if self.out_path.exists():
            raise UserError(
                f"{self.out_path} exists but no unfinished run of this stage wrote it; "
                "pass --overwrite to replace it or choose another --save_dir"
            )
        return False

    def load_resume_state(self) -> dict | None:
        if self.args.overwrite or not self.state_path.is_file():
            return None
        state = load_weights(self.state_path, "resume state")
        self.log(f"resuming {self.stage} from {self.state_path} at epoch {state['epoch']}")
        return state

    def save_state(self, state: dict) -> None:
        if self.ctx.is_main:
            save_atomic(state, self.state_path)

    def write_config(self, config: dict) -> None:
        if self.ctx.is_main:
            atomic_write_text(self.config_path, json.dumps(config, indent=1, default=str) + "\n")

    def log(self, text: str) -> None:
        if self.ctx.is_main:
            print(text, flush=True)

    def _append_metrics(self, row: dict) -> None:
        if self.ctx.is_main:
            with open(self.metrics_path, "a") as f:
                f.write(json.dumps(row) + "\n")

    # -- model helpers -------------------------------------------------------------------------
    def prepare(self, model: nn.Module) -> tuple[nn.Module, nn.Module]:
        """(model on the device, the module to call for training: DDP- and compile-wrapped)."""
        model = model.to(self.device)
        if self.args.channels_last:
            model = model.to(memory_format=torch.channels_last)
        train_model = wrap_ddp(model, self.ctx)
        if self.args.compile:
            train_model = torch.compile(train_model)
        return model, train_model

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> tuple[float, float]:
        """(top-1 %, mean loss) on the test set; every rank evaluates the whole (small) set."""
        was_training = model.training
        model.eval()
        correct = total = loss_sum = 0.0
        for x, y in self.data.test:
            with autocast(self.device, self.args.precision):
                out = model(x)
            loss_sum += float(nn.functional.cross_entropy(out.float(), y, reduction="sum"))
            correct += float((out.argmax(1) == y).sum())
            total += y.numel()
        model.train(was_training)
        return 100.0 * correct / total, loss_sum / total

    def backward(self, train_model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
        return accumulate_backward(
            train_model, self.criterion, x, y, self.args.accum_steps, self.device, self.args.precision
        )

    # -- the epoch loop ----------------------------------------------------------------------------
    def train_epoch(self, epoch: int, train_model: nn.Module, optimizer, hooks: StepHooks, desc: str) -> float:
        loader = self.data.train
        loader.set_epoch(epoch)
        train_model.train()
        bar = progress(len(loader), desc, enabled=self.ctx.is_main)
        losses = []
        for x, y in loader:
            hooks.before_step()
            optimizer.zero_grad(set_to_none=True)
            loss = self.backward(train_model, x, y)
            optimizer.step()
            hooks.after_step(x, y)
            losses.append(loss)
            bar.set_postfix_str(
                f"LR:{optimizer.param_groups[0]['lr']:.4f}|LOSS:{loss:.2f}{hooks.describe()}", refresh=False
            )
            bar.update()
        bar.close()
        mean = sum(losses) / max(len(losses), 1)
        return all_reduce_sum([mean], self.ctx)[0] / self.ctx.world_size

    def end_epoch(self, epoch: int, train_loss: float, model: nn.Module, optimizer, extra=None) -> EpochResult:
        acc, test_loss = self.evaluate(model)
        res = EpochResult(
            epoch,
            train_loss,
            acc,
            test_loss,
            optimizer.param_groups[0]["lr"],
            time.time() - self.started,
            dict(extra or {}),
        )
        self._append_metrics(
            {
                "stage": self.stage,
                "epoch": epoch,
                "train_loss": train_loss,
                "test_acc": acc,
                "test_loss": test_loss,
                "lr": res.lr,
                "seconds": res.seconds,
                **res.extra,
            }
        )
        extras = "".join(f" {k} {v:.2f}" if isinstance(v, float) else f" {k} {v}" for k, v in res.extra.items())
        self.log(
            f"[{self.stage}] epoch {epoch + 1}/{self.args.epochs}: loss {train_loss:.3f}, test acc {acc:.2f}%, "
            f"lr {res.lr:.4f}{extras}"
        )
        return res

    def interrupted(self, epoch: int) -> bool:
        """The hidden --stop-after-epoch flag: leave after saving this epoch's state (tests resume)."""
        return self.args.stop_after_epoch is not None and epoch + 1 >= self.args.stop_after_epoch

    # -- results ---------------------------------------------------------------------------------
    def write_record(self, *, row: str | None, metrics: dict, config: dict, convention: str | None) -> Path | None:
        if not self.ctx.is_main:
            return None
        full_recipe = self.args.epochs >= self.args.recipe_epochs and not self.args.train_limit
        kind = "reproduction" if self.data.full_size and full_recipe else "smoke"
        variant = {**self.variant, "stage": self.stage}
        record = make_record(
            "dsp",
            row,
            kind,
            metrics=metrics,
            data=self.data.identity,
            variant=variant,
            convention=convention,
            seed=self.args.seed,
            config=config,
            timings={"train_seconds": time.time() - self.started},
            frameworks=("torch",),
            device=str(self.device),
            run_dir=str(self.save_dir),
            env_extra={
                "world_size": self.ctx.world_size,
                "accum_steps": self.args.accum_steps,
                "precision": self.args.precision,
            },
        )
        folder = Path(self.args.records) if self.args.records else self.save_dir / "records"
        path = write_record(record, folder)
        self.log(f"run record: {path}")
        return path

    def end_of_epoch(self, epoch: int, state: dict) -> bool:
        """Save the resumable state after `epoch`; True when the run must stop here (--stop-after-epoch)."""
        finished = epoch + 1 == self.args.epochs
        self.save_state({**state, "epoch": epoch + 1, "finished": finished})
        if not finished and self.interrupted(epoch):
            self.log("stopping early (--stop-after-epoch); rerun to resume")
            return True
        return False

    def report_best(self, best_acc: float, config: dict) -> float:
        """Run record and summary line of a stage whose result is its best test accuracy."""
        self.write_record(row=None, metrics={"top1": best_acc}, config=config, convention=None)
        self.log(f"best test accuracy {best_acc:.2f}% -> {self.out_path}")
        return best_acc

    def close(self) -> None:
        cleanup_distributed()

    def __enter__(self) -> StageRunner:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def cosine(optimizer, t_max: int):
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, t_max)


def epochs_per_cycle(epochs: int, cycles: int) -> int:
    return math.ceil(epochs / cycles)


# ----------------------------------------------------------------------------------------------------
# The three stages' epoch loops (CIFAR and ImageNet entry points call these)
# ----------------------------------------------------------------------------------------------------


def _resume_common(runner: StageRunner, model, optimizer, scheduler) -> tuple[dict | None, int, float]:
    state = runner.load_resume_state()
    if state is None:
        return None, 0, -1.0
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    return state, state["epoch"], state["best_acc"]


def fit_pretrain(runner: StageRunner, model: nn.Module, arch: dict, config: dict) -> float | None:
    """Dense training, the authors' CIFAR recipe: SGD, warm-up at lr/4 for epochs 0-1, x0.1 at
    epochs//2 and 3*epochs//4; keep the best test-accuracy epoch. Returns it (None if interrupted)."""
    from dsp_torch.checkpoints import save_checkpoint

    args = runner.args
    model, train_model = runner.prepare(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum, weight_decay=args.wd)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, [args.epochs // 2, args.epochs * 3 // 4], 0.1)
    runner.write_config(config)
    _, start, best_acc = _resume_common(runner, model, optimizer, scheduler)
    for epoch in range(start, args.epochs):
        if epoch < 2:  # warm-up; the base lr comes back at epoch 2
            for g in optimizer.param_groups:
                g["lr"] = args.lr / 4
        elif epoch == 2:
            for g in optimizer.param_groups:
                g["lr"] = args.lr
        loss = runner.train_epoch(epoch, train_model, optimizer, StepHooks(), f"[{runner.stage}]")
        res = runner.end_epoch(epoch, loss, model, optimizer)
        scheduler.step()
        if res.test_acc > best_acc:
            best_acc = res.test_acc
            if runner.ctx.is_main:
                save_checkpoint(
                    runner.out_path, stage="pretrained", model=model, arch=arch, best_acc=best_acc, config=config
                )
        state = {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "best_acc": best_acc,
        }
        if runner.end_of_epoch(epoch, state):
            return None
    return runner.report_best(best_acc, config)


def fit_group_learning(runner: StageRunner, model: nn.Module, arch: dict, config: dict, variant: dict) -> float | None:
    """Differentiable group learning (research notes 2.3): SGD + cosine over the run, GroupWrapper steps;
    keep the best test-accuracy epoch from --save-from-epoch on."""
    from dsp_torch.checkpoints import save_checkpoint
    from dsp_torch.dsp_module import GroupWrapper

    args = runner.args
    model, train_model = runner.prepare(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum, weight_decay=args.wd)
    scheduler = cosine(optimizer, args.epochs)
    total_steps = len(runner.data.train) * args.epochs
    gumbel = torch.Generator(device=runner.device).manual_seed(args.seed + 7)  # same draws on every rank
    group_trainer = GroupWrapper(
        model,
        optimizer,
        runner.criterion,
        args.regularize,
        total_steps,
        args.groups,
        args.temperature,
        args.group_lr,
        runner.ctx.rank,
        reg_scale=args.reg_scale,
        second_order=args.second_order,
        generator=gumbel,
        backward_fn=lambda x, y: runner.backward(train_model, x, y),
        verbose=runner.ctx.is_main,
    )
    config = {**config, "total_steps": total_steps}
    runner.write_config(config)
    state, start, best_acc = _resume_common(runner, model, optimizer, scheduler)
    if state is not None:
        group_trainer.group_optimizer.load_state_dict(state["group_optimizer"])
        group_trainer.steps = state["steps"]
        gumbel.set_state(state["gumbel"])
    save_from = min(args.save_from_epoch, args.epochs - 1)
    hooks = StepHooks(
        group_trainer.initialize,
        group_trainer.after_step,
        lambda: f"|ACC:{best_acc:.2f}|STD:{group_trainer.stats():.3f}",
    )
    for epoch in range(start, args.epochs):
        loss = runner.train_epoch(epoch, train_model, optimizer, hooks, f"[{runner.stage} g{args.groups}]")
        res = runner.end_epoch(epoch, loss, model, optimizer, {"group_std": group_trainer.stats()})
        scheduler.step()
        if epoch >= save_from and res.test_acc > best_acc:
            best_acc = res.test_acc
            if runner.ctx.is_main:
                save_checkpoint(
                    runner.out_path,
                    stage="group-learned",
                    model=model,
                    arch=arch,
                    groups=args.groups,
                    best_acc=best_acc,
                    variant=variant,
                    config=config,
                )
        state = {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "group_optimizer": group_trainer.group_optimizer.state_dict(),
            "steps": group_trainer.steps,
            "gumbel": gumbel.get_state(),
            "best_acc": best_acc,
        }
        if runner.end_of_epoch(epoch, state):
            return None
    return runner.report_best(best_acc, config)


def fit_finetune(
    runner: StageRunner, model: nn.Module, arch: dict, config: dict, variant: dict, row: str | None
) -> dict | None:
    """Pruning to the FLOPs target and cyclic fine-tuning (research notes 1.6). `model` carries the
    group-learned logits in its `group` buffers. Returns the run's metrics (None if interrupted)."""
    from dsp_torch.checkpoints import save_checkpoint
    from dsp_torch.dsp_module import PruneWrapper
    from dsp_torch.flops import reductions
    from shared.torch_train import broadcast_module_

    args = runner.args
    model = model.to(runner.device)
    cascade_gen = torch.Generator().manual_seed(args.seed + 11)
    pruner = PruneWrapper(
        model,
        args.groups,
        args.fp_every_nth_conv,
        rank=runner.ctx.rank,
        empty_group=args.empty_group,
        cascade_passes=args.cascade_passes,
        generator=cascade_gen,
        verbose=runner.ctx.is_main,
    )
    model, train_model = runner.prepare(model)
    per_cycle = epochs_per_cycle(args.epochs, args.cycles)
    config = {**config, "epochs_per_cycle": per_cycle}
    runner.write_config(config)

    def new_optimizer():
        opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum, weight_decay=args.wd)
        return opt, cosine(opt, per_cycle)

    def prune_to(rate):
        flops, params = pruner.initialize(rate, args.bisection_steps)
        broadcast_module_(model, runner.ctx)
        return flops, params

    state = runner.load_resume_state()
    if state is None:
        flops, params = prune_to(args.prune)
        optimizer, scheduler = new_optimizer()
        best = {"acc": 0.0, "flops": flops, "params": params, "state_dict": copy.deepcopy(model.state_dict())}
        start = 0
    else:
        model.load_state_dict(state["model"])
        pruner.beta = state["beta"]
        optimizer, scheduler = new_optimizer()
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        flops, params, best, start = state["flops"], state["params"], state["best"], state["epoch"]
        cascade_gen.set_state(state["cascade_gen"])
    hooks = StepHooks(
        after_step=lambda x, y: pruner.after_step(),
        describe=lambda: f"|ACC:{best['acc']:.2f}|PR_F:{best['flops']:.2f}|PR_P:{best['params']:.2f}",
    )
    for epoch in range(start, args.epochs):
        loss = runner.train_epoch(epoch, train_model, optimizer, hooks, f"[{runner.stage} p{args.prune}]")
        res = runner.end_epoch(epoch, loss, model, optimizer, {"pflops": flops, "pparams": params})
        scheduler.step()
        if best["acc"] <= res.test_acc:  # ties accepted, as released
            best = {
                "acc": res.test_acc,
                "flops": flops,
                "params": params,
                "state_dict": copy.deepcopy(model.state_dict()),
            }
            if runner.ctx.is_main:
                save_checkpoint(
                    runner.out_path,
                    stage="pruned",
                    model=model,
                    arch=arch,
                    groups=args.groups,
                    best_acc=best["acc"],
                    pflops=flops,
                    pparams=params,
                    variant=variant,
                    config=config,
                )
        # End of a cycle (not the last): reload the best and prune 0.1 points more FLOPs than it had.
        if epoch < args.epochs - 1 and (epoch + 1) % per_cycle == 0:
            model.load_state_dict(best["state_dict"])
            flops, params = prune_to(best["flops"] / 100 + 0.001)
            optimizer, scheduler = new_optimizer()
        state = {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "beta": pruner.beta,
            "flops": flops,
            "params": params,
            "best": best,
            "best_acc": best["acc"],
            "cascade_gen": cascade_gen.get_state(),
        }
        if runner.end_of_epoch(epoch, state):
            return None
    model.load_state_dict(best["state_dict"])
    counts = reductions(model, arch)
    metrics = {
        "top1": best["acc"],
        "flops_reduction_pct": counts["dsp_flops_reduction_pct"],
        "params_reduction_pct": counts["dsp_params_reduction_pct"],
        "whole_flops_reduction_pct": counts["whole_flops_reduction_pct"],
        "whole_params_reduction_pct": counts["whole_params_reduction_pct"],
        "macs": counts["whole_macs"],
        "params": counts["whole_params"],
    }
    runner.write_record(row=row, metrics=metrics, config=config, convention="dsp-prunable")
    runner.log(
        f"best test accuracy {best['acc']:.2f}% at {best['flops']:.2f}% FLOPs / {best['params']:.2f}% "
        f"params pruned (DSP convention) -> {runner.out_path}"
    )
    return metrics


def add_dsp_args(p: argparse.ArgumentParser) -> None:
    """Group-learning flags (the authors' -g -r -t) and the variants."""
    p.add_argument("-g", "--groups", type=int, default=4, help="number of groups per conv (default 4)")
    p.add_argument("-r", "--regularize", type=float, default=2e-3, help="regularisation power lambda (default 2e-3)")
    p.add_argument(
        "-t",
        "--temparature",
        "--temperature",
        dest="temperature",
        type=float,
        default=0.5,
        help="Gumbel-softmax temperature (default 0.5; the authors spell the flag --temparature)",
    )
    g = p.add_argument_group("DSP variants (defaults: the released code)")
    g.add_argument(
        "--reg-scale",
        choices=["activation", "kernel"],
        default="activation",
        help="per-layer penalty scale: 'activation' = sqrt(C_in H W / 16384) k (G/N)^1.5 (released, "
        "made the checkpoints); 'kernel' = k (G/N)^1.5 (first release, likely the paper's)",
    )
    g.add_argument(
        "--second-order",
        choices=["released", "exact", "none"],
        default="released",
        help="mixed second-order term of the unrolled step: the released per-filter form, the exact "
        "double-backward one, or none",
    )
    g.add_argument("--group-lr", type=float, default=1e-3, help="Adam learning rate of the group logits")
    g.add_argument(
        "--save-from-epoch",
        type=int,
        default=9,
        help="keep the best epoch from this index on (authors: 9; shorter runs use their last epoch)",
    )


def add_finetune_args(p: argparse.ArgumentParser, fp_every_nth_conv: int = 2) -> None:
    """Pruning flags (the authors' -c -g -p) and the variants / costs."""
    p.add_argument("-c", "--cycles", type=int, default=5, help="fine-tuning cycles (default 5)")
    p.add_argument("-g", "--groups", type=int, default=4, help="number of groups, as in group learning (default 4)")
    p.add_argument("-p", "--prune", type=float, default=0.5, help="target fraction of pruned FLOPs, in (0, 1)")
    g = p.add_argument_group("DSP variants and costs")
    g.add_argument(
        "--fp-every-nth-conv",
        type=int,
        default=fp_every_nth_conv,
        help=f"filter-prune every n-th prunable conv (default {fp_every_nth_conv}; -1: none)",
    )
    g.add_argument(
        "--empty-group",
        choices=["prune", "keep"],
        default="prune",
        help="a group with no channel under beta: 'prune' every channel (released quirk) or keep all",
    )
    g.add_argument(
        "--cascade-passes",
        type=int,
        default=125,
        help="random forward/backward passes of the dead-unit cascade (released: 125 of 80 images)",
    )
    g.add_argument("--bisection-steps", type=int, default=10, help="beta bisection steps (released: 10)")


def dsp_variant(args, **extra) -> dict:
    return {
        "groups": args.groups,
        "reg_scale": args.reg_scale,
        "second_order": args.second_order,
        "lambda": args.regularize,
        "temperature": args.temperature,
        **extra,
    }


def finetune_variant(args, **extra) -> dict:
    return {
        "groups": args.groups,
        "pruning_rate": args.prune,
        "fp_every_nth_conv": args.fp_every_nth_conv,
        "empty_group": args.empty_group,
        "cascade_passes": args.cascade_passes,
        **extra,
    }


def validate_dsp(args) -> None:
    check_range("-g/--groups", args.groups, 1, 10**4)
    check_range("-r/--regularize", args.regularize, 0, 10)
    check_range("-t/--temperature", args.temperature, 0, 1e3, low_open=True)


def validate_finetune(args) -> None:
    check_range("-g/--groups", args.groups, 1, 10**4)
    check_range("-p/--prune", args.prune, 0, 1, low_open=True, high_open=True)
    check_range("-c/--cycles", args.cycles, 1, args.epochs)
    check_range("--cascade-passes", args.cascade_passes, 1, 10**5)
