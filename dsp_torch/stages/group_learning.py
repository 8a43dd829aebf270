"""Differentiable group learning (research notes 1.2-1.4, 2.3): SGD + cosine annealing over the run,
a GroupWrapper step around every optimizer step; the best test-accuracy epoch from --save-from-epoch
on (the authors: index 9) is kept, strictly better."""

from __future__ import annotations

import torch
from torch import nn

from dsp_torch.dsp_module import GroupWrapper
from dsp_torch.engine import StepHooks
from dsp_torch.keeper import BestKeeper
from dsp_torch.runner import EpochLoop, EpochResult, StageRunner


class GroupLearning(EpochLoop):
    def __init__(self, runner: StageRunner, model: nn.Module, train_model: nn.Module, arch, config, variant):
        args = runner.args
        self.model = model
        self.desc = f"[{runner.stage} g{args.groups}]"
        self.optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum, weight_decay=args.wd)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, args.epochs)
        self.total_steps = len(runner.data.train) * args.epochs
        self.gumbel = torch.Generator(device=runner.device).manual_seed(args.seed + 7)  # same draws on every rank
        self.trainer = GroupWrapper(
            model,
            self.optimizer,
            runner.criterion,
            args.regularize,
            self.total_steps,
            args.groups,
            args.temperature,
            args.group_lr,
            runner.ctx.rank,
            reg_scale=args.reg_scale,
            second_order=args.second_order,
            generator=self.gumbel,
            backward_fn=lambda x, y: runner.backward(train_model, x, y),
            verbose=runner.ctx.is_main,
        )
        self.keeper = BestKeeper(
            ties=False,
            from_epoch=min(args.save_from_epoch, args.epochs - 1),  # shorter runs keep their last epoch
            path=runner.out_path,
            write=runner.ctx.is_main,
            stage="group-learned",
            arch=arch,
            groups=args.groups,
            variant=variant,
            config={**config, "total_steps": self.total_steps},
        )
        self.hooks = StepHooks(
            self.trainer.initialize,
            self.trainer.after_step,
            lambda: f"|ACC:{self.keeper.acc:.2f}|STD:{self.trainer.stats():.3f}",
        )

    def extra(self) -> dict:
        return {"group_std": self.trainer.stats()}

    def end_epoch(self, epoch: int, result: EpochResult) -> None:
        self.keeper.offer(epoch, result.test_acc, self.model)

    def state(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "group_optimizer": self.trainer.group_optimizer.state_dict(),
            "steps": self.trainer.steps,
            "gumbel": self.gumbel.get_state(),
            **self.keeper.state_dict(),
        }

    def load_state(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.trainer.group_optimizer.load_state_dict(state["group_optimizer"])
        self.trainer.steps = state["steps"]
        self.gumbel.set_state(state["gumbel"])
        self.keeper.load_state_dict(state)


def fit(runner: StageRunner, model: nn.Module, arch: dict, config: dict, variant: dict) -> float | None:
    """Group-learn a pretrained model; returns the best test accuracy (None if interrupted)."""
    model, train_model = runner.prepare(model)
    loop = GroupLearning(runner, model, train_model, arch, config, variant)
    config = loop.keeper.fields["config"]
    runner.start(config)
    state = runner.load_resume_state()
    if state is not None:
        loop.load_state(state)
    if not runner.run_epochs(loop, model, train_model, state["epoch"] if state else 0):
        return None
    return runner.report_best(loop.keeper.acc, config)
