"""Dense pretraining, the authors' CIFAR recipe (research notes 2.2): SGD, warm-up at lr/4 for epochs
0-1, x0.1 at epochs//2 and 3*epochs//4; the best test-accuracy epoch is kept (strictly better)."""

from __future__ import annotations

import torch
from torch import nn

from dsp_torch.keeper import BestKeeper
from dsp_torch.runner import EpochLoop, EpochResult, StageRunner


class Pretrain(EpochLoop):
    def __init__(self, runner: StageRunner, model: nn.Module, arch: dict, config: dict):
        args = self.args = runner.args
        self.model = model
        self.desc = f"[{runner.stage}]"
        self.optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum, weight_decay=args.wd)
        self.scheduler = torch.optim.lr_scheduler.MultiStepLR(
            self.optimizer, [args.epochs // 2, args.epochs * 3 // 4], 0.1
        )
        self.keeper = BestKeeper(
            ties=False, path=runner.out_path, write=runner.ctx.is_main, stage="pretrained", arch=arch, config=config
        )

    def begin_epoch(self, epoch: int) -> None:
        if epoch < 2:  # warm-up; the base lr comes back at epoch 2
            for g in self.optimizer.param_groups:
                g["lr"] = self.args.lr / 4
        elif epoch == 2:
            for g in self.optimizer.param_groups:
                g["lr"] = self.args.lr

    def end_epoch(self, epoch: int, result: EpochResult) -> None:
        self.keeper.offer(epoch, result.test_acc, self.model)

    def state(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            **self.keeper.state_dict(),
        }

    def load_state(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.keeper.load_state_dict(state)


def fit(runner: StageRunner, model: nn.Module, arch: dict, config: dict) -> float | None:
    """Train; returns the best test accuracy (None if interrupted)."""
    model, train_model = runner.prepare(model)
    loop = Pretrain(runner, model, arch, config)
    runner.start(config)
    state = runner.load_resume_state()
    if state is not None:
        loop.load_state(state)
    if not runner.run_epochs(loop, model, train_model, state["epoch"] if state else 0):
        return None
    return runner.report_best(loop.keeper.acc, config)
