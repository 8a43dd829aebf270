"""One training epoch and one evaluation, the same for every stage (as torchvision's references split
`train_one_epoch` / `evaluate` from the scripts that use them).

A stage changes the epoch only through its `StepHooks`: `before_step` (group learning resamples its
memberships), `after_step(x, y)` (group learning's unrolled step, pruning's mask keeping) and
`describe` (the progress bar's extra text).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from shared.torch_train import DistContext, all_reduce_sum, autocast, progress


@dataclass
class StepHooks:
    before_step: Callable[[], None] = lambda: None
    after_step: Callable[[torch.Tensor, torch.Tensor], None] = lambda x, y: None
    describe: Callable[[], str] = lambda: ""


def train_one_epoch(
    epoch: int,
    train_model: nn.Module,
    loader,
    optimizer: torch.optim.Optimizer,
    backward: Callable[[torch.Tensor, torch.Tensor], float],
    hooks: StepHooks,
    ctx: DistContext,
    desc: str,
) -> float:
    """Per step: hooks.before_step, zero_grad, `backward(x, y)` (forward/backward of `train_model`
    over the micro-batches, DDP no_sync on all but the last), optimizer.step, hooks.after_step.
    Returns the epoch's mean loss, averaged over the processes."""
    loader.set_epoch(epoch)
    train_model.train()
    bar = progress(len(loader), desc, enabled=ctx.is_main)
    losses = []
    for x, y in loader:
        hooks.before_step()
        optimizer.zero_grad(set_to_none=True)
        loss = backward(x, y)
        optimizer.step()
        hooks.after_step(x, y)
        losses.append(loss)
        lr = optimizer.param_groups[0]["lr"]
        bar.set_postfix_str(f"LR:{lr:.4f}|LOSS:{loss:.2f}{hooks.describe()}", refresh=False)
        bar.update()
    bar.close()
    mean = sum(losses) / max(len(losses), 1)
    return all_reduce_sum([mean], ctx)[0] / ctx.world_size


@torch.no_grad()
def evaluate(model: nn.Module, loader, device: torch.device, precision: str) -> tuple[float, float]:
    """(top-1 %, mean cross-entropy) over the loader; every rank evaluates the whole (small) set."""
    was_training = model.training
    model.eval()
    correct = total = loss_sum = 0.0
    for x, y in loader:
        with autocast(device, precision):
            out = model(x)
        loss_sum += float(nn.functional.cross_entropy(out.float(), y, reduction="sum"))
        correct += float((out.argmax(1) == y).sum())
        total += y.numel()
    model.train(was_training)
    return 100.0 * correct / total, loss_sum / total
