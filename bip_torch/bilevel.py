"""The trainers of one iteration: BiP as the released code computes it, BiP as the paper states it
(Algorithm A1), and HYDRA's single-level step (BiP's trainer `base`).

Notation (research notes 1.2): theta = conv/linear weights (and BN affine), m = popup scores, the binary
mask z* = top-k(|m|), the effective weight w = z* . theta, l the cross-entropy of a mini-batch.

`bilevel` (default, `--bip-variant code`), per mini-batch pair (B_lower, B_upper) from two independent
shuffles of the training set (notes 1.3):
 1. lower:  scores frozen; zero_grad; backward l(B_lower); optimizer.step()        (theta-step)
 2. all trainable; zero_grad; backward l(B_upper); g_p = every parameter's .grad
 3. upper:  weights frozen; mask_optimizer.zero_grad; backward l(B_upper); g_m = every .grad;
            .grad += -lr2 * g_m * g_p  (the implicit-gradient term AS CODED: slot by slot, so on the
            scores it is -lr2 (dl/ds)^2, on BN -lr2 (dl/dbn)^2, on weights 0); mask_optimizer.step()
 4. one more forward on B_upper in train mode (logging; it moves the BN running statistics).
Both optimizers are torch-1.x SGD over ALL parameters (`Torch1SGD`): gradients are zeroed in place,
never set to None, so weight decay and momentum act on every parameter whose gradient is a (zero)
tensor, with one momentum buffer per optimizer. With --scaled-score-init scores and weights share
storage (`layers.alias_scores_to_weights`), so both levels write into one tensor.

`--accelerate` (the original's undocumented "PFTT" branch): a plain score step on B_upper (no IG),
then a weight step on B_lower.

`paper` (`--bip-variant paper`, Algorithm A1): scores are a separate copy of |theta| (no aliasing); plain
SGD at both levels (lower lr alpha, upper lr beta), the lower step theta <- theta - alpha grad_theta
l(z* . theta) on B_lower, then at (m_t, theta_{t+1}) on B_upper
    m <- m - beta [ grad_m l  -  (1/gamma) grad_z l (.) grad_theta l ],   grad_theta l = z* (.) grad_z l,
the implicit gradient paired per weight (each score with its own weight), 1/gamma = --lr2.

`base` (HYDRA as BiP runs it): zero_grad; backward l(B); optimizer.step() with only the trainable tensors
of the mode receiving gradients.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from bip_torch.layers import masked_modules, switch_to_bilevel, switch_to_finetune, switch_to_prune
from shared.torch_train import DistContext, autocast

BIP_VARIANTS = ("code", "paper")


class Torch1SGD(torch.optim.SGD):
    """SGD with torch 1.10's semantics, which produced the paper's numbers (notes 1.3 c).

    - `zero_grad()` zeroes gradients in place (torch >= 2 sets them to None by default, and the
      original trainer then crashes on its first iteration);
    - `step()` updates every parameter whose `.grad` is not None, frozen ones with a zero gradient
      included: d = grad + wd * p, buf = momentum * buf + d, p -= lr * buf;
    - parameters are updated one at a time in list order (foreach=False), so a parameter that shares
      storage with an earlier one (aliased scores) reads the already-updated values, as torch 1.10 did.
    """

    def __init__(self, params, lr, momentum=0.9, weight_decay=0.0):
        super().__init__(params, lr=lr, momentum=momentum, weight_decay=weight_decay, foreach=False)

    def zero_grad(self, set_to_none: bool = False) -> None:  # noqa: ARG002 (torch 1.x: always in place)
        super().zero_grad(set_to_none=False)


class Backward:
    """Forward/backward of one (global) batch: micro-batches (loss / steps), then the gradients of every
    parameter that has one are averaged over the processes (so both levels stay in sync across ranks).

    The model is not DDP-wrapped: which tensors train changes twice per iteration, which DDP's
    reducer does not allow; one coalesced all-reduce per backward does the same job."""

    def __init__(self, ctx: DistContext, accum_steps: int = 1, precision: str = "fp32"):
        self.ctx, self.accum_steps, self.precision = ctx, accum_steps, precision
        self.criterion = nn.CrossEntropyLoss()

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
        total = 0.0
        for xm, ym in zip(x.chunk(self.accum_steps), y.chunk(self.accum_steps)):
            with autocast(self.ctx.device, self.precision):
                loss = self.criterion(model(xm), ym) / self.accum_steps
            loss.backward()
            total += float(loss.detach())
        self.all_reduce_grads(model)
        return total

    def all_reduce_grads(self, model: nn.Module) -> None:
        if not self.ctx.distributed:
            return
        params = [p for p in model.parameters() if p.grad is not None and p.requires_grad]
        if not params:
            return
        flat = torch.cat([p.grad.flatten() for p in params])
        dist.all_reduce(flat)
        flat /= self.ctx.world_size
        at = 0
        for p in params:
            n = p.grad.numel()
            p.grad.copy_(flat[at : at + n].view_as(p.grad))
            at += n


def _grad_vec(model: nn.Module) -> torch.Tensor:
    """BiP's grad2vec: the concatenated .grad of all parameters. Under torch-1.x semantics every
    parameter has one except those never trained (--freeze-bn's BN parameters, which crash the original
    here): they are left out, of this vector and of `_add_vec_to_grads` alike."""
    return torch.cat([p.grad.detach().flatten().clone() for p in model.parameters() if p.grad is not None])


def _add_vec_to_grads(model: nn.Module, vec: torch.Tensor) -> None:
    at = 0
    for p in model.parameters():
        if p.grad is None:
            continue
        n = p.numel()
        p.grad.add_(vec[at : at + n].view_as(p.grad))
        at += n


@torch.no_grad()
def _logits(model, x):
    return model(x)


def bilevel_step(
    model: nn.Module,
    optimizer: Torch1SGD,
    mask_optimizer: Torch1SGD,
    lower: tuple[torch.Tensor, torch.Tensor],
    upper: tuple[torch.Tensor, torch.Tensor],
    backward: Backward,
    lr2: float,
    accelerate: bool = False,
) -> tuple[float, torch.Tensor]:
    """One iteration of the released `bilevel` trainer; returns (upper loss, logits of the logging pass)."""
    (xl, yl), (xu, yu) = lower, upper
    if accelerate:
        switch_to_prune(model)
        mask_optimizer.zero_grad()
        loss = backward(model, xu, yu)
        mask_optimizer.step()
        switch_to_finetune(model)
        optimizer.zero_grad()
        backward(model, xl, yl)
        optimizer.step()
        return loss, _logits(model, xu)
    # 1. lower level: weights on the lower batch, scores fixed
    switch_to_finetune(model)
    optimizer.zero_grad()
    backward(model, xl, yl)
    optimizer.step()
    # 2. gradient of every parameter on the upper batch
    switch_to_bilevel(model)
    optimizer.zero_grad()
    backward(model, xu, yu)
    param_grad_vec = _grad_vec(model)
    # 3. upper level: scores (and BN) on the same batch, plus the implicit-gradient term as coded
    switch_to_prune(model)
    mask_optimizer.zero_grad()
    loss = backward(model, xu, yu)
    mask_grad_vec = _grad_vec(model)
    _add_vec_to_grads(model, -lr2 * mask_grad_vec * param_grad_vec)
    mask_optimizer.step()
    # 4. the logging forward (train mode: moves the BN running statistics once more)
    return loss, _logits(model, xu)


def paper_optimizers(model: nn.Module, lower_lr: float, upper_lr: float):
    """Plain SGD: theta (weights, biases, BN) at the lower level, the scores at the upper level."""
    scores = {id(m.popup_scores) for _, m in masked_modules(model)}
    theta = [p for p in model.parameters() if id(p) not in scores]
    m = [p for p in model.parameters() if id(p) in scores]
    return torch.optim.SGD(theta, lr=lower_lr), torch.optim.SGD(m, lr=upper_lr)


def paper_step(
    model: nn.Module,
    lower_opt: torch.optim.SGD,
    upper_opt: torch.optim.SGD,
    lower: tuple[torch.Tensor, torch.Tensor],
    upper: tuple[torch.Tensor, torch.Tensor],
    backward: Backward,
    inv_gamma: float,
) -> tuple[float, torch.Tensor]:
    """One iteration of Algorithm A1 (theta-step, then the m-step with the implicit gradient)."""
    (xl, yl), (xu, yu) = lower, upper
    switch_to_finetune(model)
    lower_opt.zero_grad(set_to_none=True)
    backward(model, xl, yl)
    lower_opt.step()
    # m-step at (m_t, theta_{t+1}); one backward gives grad_m l (straight-through) and grad_z l = dl/dw
    switch_to_prune(model)
    upper_opt.zero_grad(set_to_none=True)
    mods = [m for _, m in masked_modules(model)]
    for m in mods:
        m._record = []
    try:
        loss = backward(model, xu, yu)
        with torch.no_grad():
            for m in mods:
                grad_w = sum(w.grad for w in m._record if w.grad is not None)
                if isinstance(grad_w, int):  # the layer got no gradient
                    continue
                if backward.ctx.distributed:  # the product below needs the global dl/dw
                    dist.all_reduce(grad_w)
                    grad_w /= backward.ctx.world_size
                grad_theta = m.current_mask() * grad_w  # dl/dtheta through w = z* . theta
                m.popup_scores.grad.add_(-inv_gamma * grad_w * grad_theta)
    finally:
        for m in mods:
            m._record = None
    upper_opt.step()
    return loss, _logits(model, xu)


def base_step(model: nn.Module, optimizer, batch, backward: Backward) -> tuple[float, None]:
    """HYDRA's trainer: one optimizer over all parameters; the mode decides which ones have gradients."""
    x, y = batch
    optimizer.zero_grad()
    loss = backward(model, x, y)
    optimizer.step()
    return loss, None
