"""The best-epoch checkpoint of a stage, with its selection rule as a parameter.

The authors' scripts keep the epoch with the best test accuracy, each with its own rule:

    stage            rule                           BestKeeper(...)
    cifar_pretrain   strictly better                ties=False, from_epoch=0
    cifar_dsp        strictly better, from index 9  ties=False, from_epoch=9 (--save-from-epoch)
    cifar_finetune   better or equal (`<=`)         ties=True, from_epoch=0, keep_weights=True

Fine-tuning reloads the best weights at the end of every cycle, so its keeper also holds them in
memory (`keep_weights`), with the pruning level they had (`meta`).
"""

from __future__ import annotations

import copy
from pathlib import Path

from torch import nn

from dsp_torch.checkpoints import save_checkpoint


class BestKeeper:
    def __init__(
        self,
        *,
        ties: bool,
        from_epoch: int = 0,
        keep_weights: bool = False,
        path: Path | None = None,
        write: bool = True,
        **fields,
    ):
        """`fields` go into every checkpoint (stage, arch, groups, variant, config); `write` is False
        on ranks other than 0; path None: keep in memory only."""
        self.ties, self.from_epoch, self.keep_weights = ties, from_epoch, keep_weights
        self.path, self.write, self.fields = path, write, fields
        self.acc = -1.0
        self.meta: dict = {}
        self.best_state: dict | None = None

    def is_better(self, epoch: int, acc: float) -> bool:
        if epoch < self.from_epoch:
            return False
        return acc >= self.acc if self.ties else acc > self.acc

    def offer(self, epoch: int, acc: float, model: nn.Module, **meta) -> bool:
        """Keep (and write) this epoch when the rule says it is the best so far; True if it was."""
        if not self.is_better(epoch, acc):
            return False
        self.acc, self.meta = acc, dict(meta)
        if self.keep_weights:
            self.best_state = copy.deepcopy(model.state_dict())
        if self.write and self.path is not None:
            save_checkpoint(self.path, model=model, best_acc=acc, **self.fields, **meta)
        return True

    def set_initial(self, model: nn.Module, **meta) -> None:
        """The fallback before any epoch was kept (fine-tuning: the freshly pruned model, accuracy 0)."""
        self.acc, self.meta = 0.0, dict(meta)
        if self.keep_weights:
            self.best_state = copy.deepcopy(model.state_dict())

    def state_dict(self) -> dict:
        state = {"best_acc": self.acc}
        if self.keep_weights:
            state["best"] = {"acc": self.acc, **self.meta, "state_dict": self.best_state}
        return state

    def load_state_dict(self, state: dict) -> None:
        self.acc = state["best_acc"]
        if self.keep_weights:
            best = dict(state["best"])
            self.best_state = best.pop("state_dict")
            best.pop("acc")
            self.meta = best
