"""Pruning to the FLOPs target and cyclic fine-tuning (research notes 1.5-1.6, 2.4).

`-c` cycles of ceil(epochs / cycles) epochs, each with a fresh SGD and cosine annealing over the cycle.
The best test-accuracy epoch is kept with its pruning level, ties accepted (the released `<=`). At the
end of every cycle but the last the best model is reloaded and pruned again at its FLOPs rate + 0.1
points (beta recomputed from its weights)."""

from __future__ import annotations

import math

import torch
from torch import nn

from dsp_torch.dsp_module import PruneWrapper
from dsp_torch.engine import StepHooks
from dsp_torch.flops import reductions
from dsp_torch.keeper import BestKeeper
from dsp_torch.runner import EpochLoop, EpochResult, StageRunner
from shared.torch_train import broadcast_module_


def epochs_per_cycle(epochs: int, cycles: int) -> int:
    return math.ceil(epochs / cycles)


class Finetune(EpochLoop):
    def __init__(self, runner: StageRunner, model: nn.Module, pruner: PruneWrapper, arch, config, variant):
        args = self.args = runner.args
        self.runner, self.model, self.pruner = runner, model, pruner
        self.desc = f"[{runner.stage} p{args.prune}]"
        self.per_cycle = epochs_per_cycle(args.epochs, args.cycles)
        self.cascade_gen = pruner.generator
        self.keeper = BestKeeper(
            ties=True,
            from_epoch=0,
            keep_weights=True,
            path=runner.out_path,
            write=runner.ctx.is_main,
            stage="pruned",
            arch=arch,
            groups=args.groups,
            variant=variant,
            config={**config, "epochs_per_cycle": self.per_cycle},
        )
        self.flops = self.params = 0.0
        self.new_optimizer()
        best = self.keeper
        self.hooks = StepHooks(
            after_step=lambda x, y: pruner.after_step(),
            describe=lambda: f"|ACC:{best.acc:.2f}|PR_F:{best.meta['pflops']:.2f}|PR_P:{best.meta['pparams']:.2f}",
        )

    def new_optimizer(self) -> None:
        args = self.args
        self.optimizer = torch.optim.SGD(
            self.model.parameters(), lr=args.lr, momentum=args.momentum, weight_decay=args.wd
        )
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, self.per_cycle)

    def prune_to(self, rate: float) -> None:
        self.flops, self.params = self.pruner.initialize(rate, self.args.bisection_steps)
        broadcast_module_(self.model, self.runner.ctx)

    def extra(self) -> dict:
        return {"pflops": self.flops, "pparams": self.params}

    def end_epoch(self, epoch: int, result: EpochResult) -> None:
        self.keeper.offer(epoch, result.test_acc, self.model, pflops=self.flops, pparams=self.params)
        # End of a cycle (not the last): reload the best and prune 0.1 points more FLOPs than it had.
        if epoch < self.args.epochs - 1 and (epoch + 1) % self.per_cycle == 0:
            self.model.load_state_dict(self.keeper.best_state)
            self.prune_to(self.keeper.meta["pflops"] / 100 + 0.001)
            self.new_optimizer()

    def state(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "beta": self.pruner.beta,
            "flops": self.flops,
            "params": self.params,
            "cascade_gen": self.cascade_gen.get_state(),
            **self.keeper.state_dict(),
        }

    def load_state(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.pruner.beta = state["beta"]
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.flops, self.params = state["flops"], state["params"]
        self.cascade_gen.set_state(state["cascade_gen"])
        self.keeper.load_state_dict(state)


def fit(runner: StageRunner, model: nn.Module, arch: dict, config: dict, variant: dict, row: str | None) -> dict | None:
    """Prune `model` (carrying the group-learned logits in its `group` buffers) and fine-tune it.
    Returns the run's metrics (None if interrupted)."""
    args = runner.args
    model = model.to(runner.device)
    pruner = PruneWrapper(
        model,
        args.groups,
        args.fp_every_nth_conv,
        rank=runner.ctx.rank,
        empty_group=args.empty_group,
        cascade_passes=args.cascade_passes,
        generator=torch.Generator().manual_seed(args.seed + 11),
        verbose=runner.ctx.is_main,
    )
    model, train_model = runner.prepare(model)
    loop = Finetune(runner, model, pruner, arch, config, variant)
    config = loop.keeper.fields["config"]
    runner.start(config)
    state = runner.load_resume_state()
    if state is None:
        loop.prune_to(args.prune)
        loop.new_optimizer()
        loop.keeper.set_initial(model, pflops=loop.flops, pparams=loop.params)
    else:
        loop.load_state(state)
    if not runner.run_epochs(loop, model, train_model, state["epoch"] if state else 0):
        return None
    best = loop.keeper
    model.load_state_dict(best.best_state)
    counts = reductions(model, arch)
    metrics = {
        "top1": best.acc,
        "flops_reduction_pct": counts["dsp_flops_reduction_pct"],
        "params_reduction_pct": counts["dsp_params_reduction_pct"],
        "whole_flops_reduction_pct": counts["whole_flops_reduction_pct"],
        "whole_params_reduction_pct": counts["whole_params_reduction_pct"],
        "macs": counts["whole_macs"],
        "params": counts["whole_params"],
    }
    runner.write_record(row=row, metrics=metrics, config=config, convention="dsp-prunable")
    runner.log(
        f"best test accuracy {best.acc:.2f}% at {best.meta['pflops']:.2f}% FLOPs / {best.meta['pparams']:.2f}% "
        f"params pruned (DSP convention) -> {runner.out_path}"
    )
    return metrics
