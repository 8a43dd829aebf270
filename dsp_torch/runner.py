"""What every DSP stage shares: the process, the data, the output files, the epoch skeleton, the records.

    Setup (torchrun / single process, device, seeds) -> Data (device-resident CIFAR) -> the stage's
    model, optimizer and schedule -> Resume -> per epoch (`run_epochs`): the stage's begin_epoch, one
    training epoch (`engine.train_one_epoch`), test accuracy (`engine.evaluate`), metrics, the
    scheduler step, the stage's end_epoch (best checkpoint, cycles), the resumable state -> Write
    results (run record).

Files of a stage with output `<save_dir>/<name>.pkl` (the authors' names): the best checkpoint
`<name>.pkl`, `<name>.pkl.state.pt` (resumable state after the last finished epoch, with the stage's
defining settings and data identity; written with epoch 0 before the first epoch starts),
`<name>.pkl.metrics.jsonl` with TensorBoard events in `<name>.pkl.events/`, and
`<name>.pkl.config.json` (written when the stage starts afresh). While a stage runs, its process holds
`<save_dir>/.<name>.pkl.lock` (`shared.paths.RunFolderLock`): a second run of the same stage in the same
folder is refused, naming the holder; other stages (one job per GPU) share the folder.

Resume rules (`StageRunner.finished_already`): a finished stage rerun with the same settings and data
says so and exits 0; with other settings or data it is refused (exit 2, naming what differs); an
interrupted stage resumes from the end of its last finished epoch only with the settings and data it
started with; a stage stopped before its first epoch ended starts afresh; --overwrite starts afresh.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from dsp_torch import engine
from dsp_torch.data import cifar_loaders
from dsp_torch.engine import StepHooks
from dsp_torch.flags import stage_dataset, stage_device, stage_settings, validate_common
from shared.errors import UserError
from shared.paths import RunFolderLock, atomic_write_text, check_writable
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
    """Owns the process group, the data, the output files and the epoch loop of one stage.

    `source`: the checkpoint the stage starts from (its content is one of the stage's settings)."""

    def __init__(self, args, stage: str, output_name: str, variant: dict | None = None, data=None, source=None):
        validate_common(args)
        self.args, self.stage, self.variant = args, stage, dict(variant or {})
        self.metrics: MetricsWriter | None = None  # opened with the first epoch (a finished stage writes none)
        self.lock: RunFolderLock | None = None
        self._sigterm = None
        self.ctx: DistContext = setup_distributed(stage_device(args.device_type, args.device))
        self.device = self.ctx.device
        seed_everything(args.seed)
        self.save_dir = Path(args.save_dir)
        self.out_path = self.save_dir / output_name
        self.state_path = self._beside(".state.pt")
        self.metrics_path = self._beside(".metrics.jsonl")
        self.config_path = self._beside(".config.json")
        self.records_dir = Path(args.records) if args.records else self.save_dir / "records"
        self._resume: dict | None = None
        self._decided = False
        self.saved_epoch = 0  # the last epoch whose state is on disk
        if args.batch_size % (self.ctx.world_size * args.accum_steps):
            raise UserError(
                f"--batch-size {args.batch_size} must be divisible by processes x --accum-steps "
                f"({self.ctx.world_size} x {args.accum_steps})"
            )
        if self.ctx.is_main:
            check_writable(self.records_dir, "run record")  # written at the end: prove it can be, first
            self.lock = RunFolderLock(
                self.save_dir, f"the {stage} stage writing {output_name}", name=f".{output_name}.lock", remove=True
            ).acquire()
        try:
            if data is None:  # CIFAR-10 / digits, held on the device
                data = cifar_loaders(
                    stage_dataset(args),
                    args.data_dir,
                    args.batch_size,
                    self.device,
                    self.ctx,
                    seed=args.seed,
                    train_limit=args.train_limit,
                    test_limit=getattr(args, "test_limit", None),
                )
            self.data = data
            self.settings = stage_settings(args, source)
            self.data_identity = {"train": getattr(data, "train_identity", None), "test": data.identity}
        except BaseException:
            self.close()
            raise
        self.criterion = nn.CrossEntropyLoss()
        self.started = time.time()
        if threading.current_thread() is threading.main_thread():  # schedulers stop jobs with SIGTERM
            self._sigterm = signal.signal(signal.SIGTERM, _interrupt)

    def _beside(self, suffix: str) -> Path:
        return self.out_path.with_name(self.out_path.name + suffix)

    # -- files ----------------------------------------------------------------------------------
    def finished_already(self) -> bool:
        """Decide, before anything is written, what running this stage means (the module's resume rules).

        True (and says so) when the stage is finished with these settings and data; False to start or
        resume (the state is kept for `load_resume_state`). Raises UserError when the stage was finished
        or started with other settings or data, or when a file of another run is in the way."""
        self._decided, self._resume = True, None
        if self.args.overwrite:
            return False
        if not self.state_path.is_file():
            if self.out_path.exists():
                raise UserError(
                    f"{self.out_path} exists but no run of this stage in {self.save_dir} wrote it (no "
                    f"{self.state_path.name}); pass --overwrite to replace it or choose another --save-dir"
                )
            return False
        state = load_weights(self.state_path, "resume state")
        finished = bool(state.get("finished"))
        if not finished and (not state.get("epoch") or "model" not in state):
            self.log(
                f"{self.out_path}: the previous run of this stage stopped before its first epoch ended; starting afresh"
            )
            return False
        diff = self.differences(state)
        if diff:
            what, todo = ("finished", "keep it") if finished else ("started", "resume it")
            raise UserError(
                f"{self.out_path} was {what} with other settings or data: {'; '.join(diff)}. Rerun with the "
                f"same flags and data to {todo}, pass --overwrite to start this stage afresh (its files in "
                f"{self.save_dir} are replaced), or choose another --save-dir"
            )
        if finished:
            self.log(
                f"{self.out_path} is already finished (best test accuracy {state.get('best_acc'):.2f}); "
                "pass --overwrite to train again"
            )
            return True
        self._resume = state
        return False

    def differences(self, state: dict) -> list[str]:
        """The defining settings and data that differ from those `state` was written with."""
        recorded = state.get("settings")
        if recorded is None:  # a state file of an older version: nothing to compare
            return []
        keys = sorted(set(recorded) | set(self.settings))
        diff = [
            f"{_flag(k)} {recorded.get(k)!r} (now {self.settings.get(k)!r})"
            for k in keys
            if str(recorded.get(k)) != str(self.settings.get(k))
        ]
        return diff + data_differences(state.get("data"), self.data_identity)

    def load_resume_state(self) -> dict | None:
        if not self._decided:
            self.finished_already()
        state = self._resume
        if state is not None:
            self.saved_epoch = int(state["epoch"])
            self.log(
                f"resuming {self.stage} from {self.state_path} at the end of epoch {state['epoch']} (the last "
                "finished epoch; anything after it, such as a re-prune in progress, is done again)"
            )
        return state

    def start(self, config: dict) -> None:
        """Before the first epoch of a stage that starts afresh: config.json, and a state file of epoch 0
        holding the defining settings and data (so that a run stopped in its first epoch is known as
        this stage's own and starts afresh). Nothing is written when the stage resumes."""
        if not self._decided:
            self.finished_already()
        if self._resume is not None or not self.ctx.is_main:
            return
        full = {**config, "defining_settings": self.settings, "data_identity": self.data_identity}
        atomic_write_text(self.config_path, json.dumps(full, indent=1, default=str) + "\n")
        save_atomic(self._stamp({"epoch": 0, "finished": False}), self.state_path)

    def _stamp(self, state: dict) -> dict:
        return {**state, "settings": self.settings, "data": self.data_identity}

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
            save_atomic(self._stamp({**state, "epoch": epoch + 1, "finished": finished}), self.state_path)
        self.saved_epoch = epoch + 1
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
        full_recipe = full_recipe and not getattr(self.args, "test_limit", None)
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
        path = write_record(record, self.records_dir)
        self.log(f"run record: {path}")
        return path

    def report_best(self, best_acc: float, config: dict) -> float:
        """Run record and summary line of a stage whose result is its best test accuracy."""
        self.write_record(row=None, metrics={"top1": best_acc}, config=config, convention=None)
        self.log(f"best test accuracy {best_acc:.2f}% -> {self.out_path}")
        return best_acc

    def interrupted(self) -> str:
        """What an interruption (Ctrl-C, SIGTERM) leaves and how to go on."""
        if self.saved_epoch:
            return (
                f"interrupted: {self.state_path} holds the {self.stage} stage after epoch {self.saved_epoch}; "
                "run the same command again to resume from there"
            )
        return f"interrupted before the first epoch of the {self.stage} stage ended; the same command starts it afresh"

    def close(self) -> None:
        if self._sigterm is not None:
            signal.signal(signal.SIGTERM, self._sigterm)
            self._sigterm = None
        if self.metrics is not None:
            self.metrics.close()
        cleanup_distributed()
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def __enter__(self) -> StageRunner:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None and issubclass(exc_type, KeyboardInterrupt) and self.ctx.is_main:
            print(self.interrupted(), file=sys.stderr, flush=True)
        self.close()


def _interrupt(signum, frame):
    """SIGTERM (what schedulers send) ends a stage as Ctrl-C does."""
    raise KeyboardInterrupt(f"signal {signum}")


def _flag(key: str) -> str:
    return "the source checkpoint (content hash)" if key == "source_sha256_16" else "--" + key.replace("_", "-")


def data_differences(recorded: dict | None, now: dict) -> list[str]:
    """The training / test data (shared.data's identity: name, size, source, content hash) that differ."""
    out = []
    for part in ("train", "test"):
        a, b = (recorded or {}).get(part), now.get(part)
        if not a or not b:
            continue  # not recorded (an older state file, ImageNet's training folder)
        if a.get("sha256_16") or b.get("sha256_16"):
            same = a.get("sha256_16") == b.get("sha256_16") and a.get("n") == b.get("n")
        else:
            same = a.get("source") == b.get("source") and a.get("n") == b.get("n")
        if not same:
            out.append(
                f"{part} data {a.get('name')} n={a.get('n')} from {a.get('source')} (now {b.get('name')} "
                f"n={b.get('n')} from {b.get('source')}, content hash {a.get('sha256_16')} -> {b.get('sha256_16')})"
            )
    return out
