"""What every DSP stage shares: the process, the data, the output files, the epoch skeleton, the records.

    Setup (torchrun / single process, device, seeds) -> Data (device-resident CIFAR) -> the stage's
    model, optimizer and schedule -> Resume -> per epoch (`run_epochs`): the stage's begin_epoch, one
    training epoch (`engine.train_one_epoch`), test accuracy (`engine.evaluate`), metrics, the
    scheduler step, the stage's end_epoch (best checkpoint, cycles), the resumable state -> Write
    results (run record).

Files of a stage with output `<save_dir>/<name>.pkl` (the authors' names): the best checkpoint
`<name>.pkl`, `<name>.pkl.state.pt` (resumable state after the last finished epoch),
`<name>.pkl.metrics.jsonl` with TensorBoard events in `<name>.pkl.events/`, and
`<name>.pkl.config.json`. A finished stage is not rerun (pass --overwrite); an interrupted one
resumes from its state file.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from dsp_torch import engine
from dsp_torch.data import cifar_loaders
from dsp_torch.engine import StepHooks
from dsp_torch.flags import stage_dataset, stage_device, validate_common
from shared.errors import UserError
from shared.paths import atomic_write_text
from shared.results.records import make_record, write_record
from shared.torch_train import (
    DistContext,
    MetricsWriter,
    accumulate_backward,
    cleanup_distributed,
    load_weights,
    save_atomic,
    seed_everything,
    setup_distributed,
    wrap_ddp,
)


@dataclass
class EpochResult:
    epoch: int
    train_loss: float
    test_acc: float
    test_loss: float
    lr: float
    seconds: float
    extra: dict = field(default_factory=dict)


class EpochLoop:
    """One stage's part of the epoch skeleton (`StageRunner.run_epochs`); the stages subclass it."""

    desc: str = ""
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    hooks: StepHooks = StepHooks()

    def begin_epoch(self, epoch: int) -> None:
        """Before the epoch's training (pretraining's warm-up sets the learning rate here)."""

    def extra(self) -> dict:
        """Extra numbers of the epoch for metrics and the log line."""
        return {}

    def end_epoch(self, epoch: int, result: EpochResult) -> None:
        """After evaluation and the scheduler step: the best checkpoint, the end of a cycle."""

    def state(self) -> dict:
        """The resumable state after the epoch."""
        raise NotImplementedError


class StageRunner:
    """Owns the process group, the data, the output files and the epoch loop of one stage."""

    def __init__(self, args, stage: str, output_name: str, variant: dict | None = None, data=None):
        validate_common(args)
        self.args, self.stage, self.variant = args, stage, dict(variant or {})
        self.ctx: DistContext = setup_distributed(stage_device(args.device_type, args.device))
        self.device = self.ctx.device
        seed_everything(args.seed)
        self.save_dir = Path(args.save_dir)
        self.out_path = self.save_dir / output_name
        self.state_path = self._beside(".state.pt")
        self.metrics_path = self._beside(".metrics.jsonl")
        self.config_path = self._beside(".config.json")
        if args.batch_size % (self.ctx.world_size * args.accum_steps):
            raise UserError(
                f"--batch-size {args.batch_size} must be divisible by processes x --accum-steps "
                f"({self.ctx.world_size} x {args.accum_steps})"
            )
        if data is None:  # CIFAR-10 / digits, held on the device
            data = cifar_loaders(
                stage_dataset(args),
                args.data_dir,
                args.batch_size,
                self.device,
                self.ctx,
                seed=args.seed,
                train_limit=args.train_limit,
            )
        self.data = data
        self.criterion = nn.CrossEntropyLoss()
        self.metrics: MetricsWriter | None = None  # opened with the first epoch (a finished stage writes none)
        self.started = time.time()

    def _beside(self, suffix: str) -> Path:
        return self.out_path.with_name(self.out_path.name + suffix)

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

    def write_config(self, config: dict) -> None:
        if self.ctx.is_main:
            atomic_write_text(self.config_path, json.dumps(config, indent=1, default=str) + "\n")

    def log(self, text: str) -> None:
        if self.ctx.is_main:
            print(text, flush=True)

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

    def evaluate(self, model: nn.Module) -> tuple[float, float]:
        """(top-1 %, mean loss) on the test set."""
        return engine.evaluate(model, self.data.test, self.device, self.args.precision)

    def backward(self, train_model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
        return accumulate_backward(
            train_model, self.criterion, x, y, self.args.accum_steps, self.device, self.args.precision
        )

    # -- the epoch skeleton ----------------------------------------------------------------------
    def run_epochs(self, loop: EpochLoop, model: nn.Module, train_model: nn.Module, start: int) -> bool:
        """Epochs start .. --epochs - 1 of a stage; False when --stop-after-epoch interrupted them."""
        for epoch in range(start, self.args.epochs):
            loop.begin_epoch(epoch)
            loss = engine.train_one_epoch(
                epoch,
                train_model,
                self.data.train,
                loop.optimizer,
                lambda x, y: self.backward(train_model, x, y),
                loop.hooks,
                self.ctx,
                loop.desc,
            )
            result = self.end_epoch(epoch, loss, model, loop.optimizer, loop.extra())
            loop.scheduler.step()
            loop.end_epoch(epoch, result)
            if self.save_epoch_state(epoch, loop.state()):
                return False
        return True

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
        if self.metrics is None:
            events = self._beside(".events")
            self.metrics = MetricsWriter(
                self.save_dir, enabled=self.ctx.is_main, jsonl_path=self.metrics_path, events_dir=events
            )
        values = {"train_loss": train_loss, "test_acc": acc, "test_loss": test_loss, "lr": res.lr, **res.extra}
        self.metrics.scalars(epoch + 1, {**values, "seconds": res.seconds}, stage=self.stage, epoch=epoch)
        extras = "".join(f" {k} {v:.2f}" if isinstance(v, float) else f" {k} {v}" for k, v in res.extra.items())
        self.log(
            f"[{self.stage}] epoch {epoch + 1}/{self.args.epochs}: loss {train_loss:.3f}, test acc {acc:.2f}%, "
            f"lr {res.lr:.4f}{extras}"
        )
        return res

    def save_epoch_state(self, epoch: int, state: dict) -> bool:
        """Save the resumable state after `epoch`; True when the run must stop here (the hidden
        --stop-after-epoch flag simulates an interruption for the resume tests)."""
        finished = epoch + 1 == self.args.epochs
        if self.metrics is not None:
            self.metrics.flush()
        if self.ctx.is_main:
            save_atomic({**state, "epoch": epoch + 1, "finished": finished}, self.state_path)
        stop = self.args.stop_after_epoch is not None and epoch + 1 >= self.args.stop_after_epoch
        if not finished and stop:
            self.log("stopping early (--stop-after-epoch); rerun to resume")
            return True
        return False

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

    def report_best(self, best_acc: float, config: dict) -> float:
        """Run record and summary line of a stage whose result is its best test accuracy."""
        self.write_record(row=None, metrics={"top1": best_acc}, config=config, convention=None)
        self.log(f"best test accuracy {best_acc:.2f}% -> {self.out_path}")
        return best_acc

    def close(self) -> None:
        if self.metrics is not None:
            self.metrics.close()
        cleanup_distributed()

    def __enter__(self) -> StageRunner:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
