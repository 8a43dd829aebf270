"""DSP's two modules with the authors' API: differentiable group learning and group-channel pruning.

    group_trainer = GroupWrapper(model, optimizer, criterion, regularization_power,
                                 total_num_iterations, num_groups, temperature)
    for x, y in loader:
        group_trainer.initialize()          # before the forward pass
        loss = criterion(model(x), y); loss.backward(); optimizer.step()
        group_trainer.after_step(x, y)      # after optimizer.step()

    pruner = PruneWrapper(model, num_groups, fp_every_nth_conv)   # before loading the group-learned state
    flops, params = pruner.initialize(pruning_rate)               # % of FLOPs / params pruned
    ... optimizer.step(); pruner.after_step()

Which convs take part: every nn.Conv2d except the first one (the stem) and any whose name contains
"downsample" (projection shortcuts). Filter pruning on the l-th prunable conv (l from 0) when
(l + 1) % fp_every_nth_conv == 0, or when l is in fp_layer_indices (which then wins).

Behaviour follows the released code (research notes on DSP, sections 1.2-1.5). Where the released
code and the paper (or plain mathematics) differ, the released behaviour is the default and the other
is a named option, recorded in run records:

- reg_scale: 'activation' (released, HEAD) or 'kernel' (first release; most likely the paper's).
- second_order: 'released' (per-filter approximation), 'exact' (double backward) or 'none'.
- empty_group: 'prune' (released: a group whose smallest channel already exceeds beta loses every
  channel) or 'keep' (the third-party port's clamp: it loses none).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from dsp_torch.group_lasso import exact_second_order, layer_scale, reg_terms, released_second_order
from shared.errors import UserError
from shared.torch_train import progress

PROBE_SIZE = 32  # the released hooks measure every layer on one random 1x3x32x32 input
MAX_MISS = 5.0  # points of pruned FLOPs: a pruning result farther from its target is an error


def prunable_convs(model: nn.Module) -> list[tuple[str, nn.Conv2d]]:
    """(name, conv) of every Conv2d but the first one and the 'downsample' projections, in order."""
    convs = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and "downsample" not in n]
    return convs[1:]


def filter_pruned_indices(n_layers: int, fp_every_nth_conv: int | None, fp_layer_indices=None) -> list[int]:
    """Indices of the prunable convs whose filters are pruned too (fp_layer_indices wins)."""
    if fp_layer_indices is not None:
        return sorted(int(i) for i in fp_layer_indices)
    if fp_every_nth_conv is None:
        raise ValueError(
            "give fp_every_nth_conv or fp_layer_indices (fp_every_nth_conv=-1 or fp_layer_indices=[] to "
            "disable filter pruning)"
        )
    if fp_every_nth_conv == -1:
        return []
    if fp_every_nth_conv < 1:
        raise ValueError(f"fp_every_nth_conv must be >= 1 or -1, got {fp_every_nth_conv}")
    return [l for l in range(n_layers) if (l + 1) % fp_every_nth_conv == 0]


def check_groups(model: nn.Module, n_groups: int) -> None:
    """-g must be between 1 and the smallest filter count of a prunable conv."""
    layers = prunable_convs(model)
    smallest = min(conv.out_channels for _, conv in layers)
    if not 1 <= n_groups <= smallest:
        raise UserError(
            f"-g/--groups must be between 1 and {smallest} (the fewest filters of a prunable conv), got {n_groups}"
        )


@torch.no_grad()
def _probe_layers(model: nn.Module, layers: list[nn.Conv2d], image_size: int = PROBE_SIZE) -> None:
    """Record each layer's MACs (weight numel x H_out x W_out) and input numel on one random image."""

    def hook(module, inputs, output):
        module.dsp_flops = module.weight.numel() * output.shape[2] * output.shape[3]
        module.dsp_input_numel = inputs[0].numel()

    handles = [layer.register_forward_hook(hook) for layer in layers]
    was_training = model.training
    model.eval()
    try:
        device = layers[0].weight.device
        model(torch.randn(1, 3, image_size, image_size, device=device))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()


def hard_assignment(group: torch.Tensor) -> torch.Tensor:
    """One-hot (G, N) from the logits: each filter belongs to its argmax group."""
    return torch.zeros_like(group).scatter_(0, group.argmax(dim=0, keepdim=True), 1.0)


def sample_gumbel_softmax(logits: torch.Tensor, temp: float, generator: torch.Generator | None) -> torch.Tensor:
    """softmax(group / temp + Gumbel noise) over the groups axis: the released form divides the logits by
    the temperature and keeps tau = 1, so the noise is not scaled (research notes 1.2)."""
    noise = -torch.empty_like(logits).exponential_(generator=generator).log()
    return F.softmax(logits / temp + noise, dim=0)


class GroupWrapper(nn.Module):
    """Differentiable group learning (research notes 1.2-1.4).

    Every prunable conv gets a parameter `group` (G x N logits, zeros) trained by its own Adam; the
    weights get explicit penalty steps W <- W - lambda * lr_t * ((t + 1) / T) * scale_l * dR/dW after
    each optimizer step. `after_step` unrolls one trial step on the same mini-batch to give the group
    logits a task-loss signal, restores the model, updates the logits and applies the penalty step that
    persists (with the hard assignment).
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        criterion,
        reg: float,
        total_steps: int,
        n_groups: int,
        temp: float,
        group_optimizer_lr: float = 1e-3,
        rank: int = 0,
        *,
        reg_scale: str = "activation",
        second_order: str = "released",
        generator: torch.Generator | None = None,
        backward_fn: Callable[[torch.Tensor, torch.Tensor], object] | None = None,
        verbose: bool = True,
    ):
        super().__init__()
        if reg < 0:
            raise UserError(f"-r/--regularize must be >= 0, got {reg}")
        if temp <= 0:
            raise UserError(f"-t/--temperature must be > 0, got {temp}")
        if total_steps < 1:
            raise UserError(f"total_num_iterations must be >= 1, got {total_steps}")
        if second_order not in ("released", "exact", "none"):
            raise ValueError(f"second_order must be 'released', 'exact' or 'none', got {second_order!r}")
        check_groups(model, n_groups)
        self.model, self.optimizer, self.criterion = model, optimizer, criterion
        self.reg, self.total_steps, self.n_groups, self.temp = reg, total_steps, n_groups, temp
        self.reg_scale, self.second_order = reg_scale, second_order
        self.generator, self.backward_fn, self.rank = generator, backward_fn, rank
        self.steps = 0
        # The trial-step optimizer has the task optimizer's parameter groups (created before `group`
        # exists); its state and hyper-parameters are copied from the task optimizer at every step.
        self.trial_optimizer = type(optimizer)([dict(g) for g in optimizer.param_groups])
        named = prunable_convs(model)
        self.layer_names = [n for n, _ in named]
        self.layers = [m for _, m in named]
        for layer in self.layers:
            layer.register_parameter(
                "group", nn.Parameter(torch.zeros(n_groups, layer.out_channels, device=layer.weight.device))
            )
        self.group_optimizer = torch.optim.Adam([l.group for l in self.layers], lr=group_optimizer_lr, eps=1e-12)
        _probe_layers(model, self.layers)
        self.scales = [
            layer_scale(l.dsp_input_numel, l.kernel_size[0], n_groups, l.out_channels, reg_scale) for l in self.layers
        ]
        self._prob: list[torch.Tensor] = []
        if verbose and rank == 0:
            for i, (name, l) in enumerate(named):
                print(
                    f"[{i}] {name}: {l.out_channels} filters, {l.in_channels} channels, "
                    f"{l.kernel_size[0]}x{l.kernel_size[1]} kernels"
                )
            print(
                f"groups {n_groups}, lambda {reg}, temperature {temp}, total steps {total_steps}, "
                f"scale {reg_scale}, second order {second_order}"
            )

    # -- the authors' API ------------------------------------------------------------------------
    def initialize(self) -> None:
        """Resample the soft memberships (Gumbel-softmax at the temperature); call before the forward."""
        self._prob = [sample_gumbel_softmax(l.group, self.temp, self.generator) for l in self.layers]

    def after_step(self, x: torch.Tensor, y: torch.Tensor, amp: bool = False, scaler=None) -> None:
        if not self._prob:
            raise RuntimeError("GroupWrapper.initialize() must be called before the forward pass")
        # 1. Regulariser pieces at the current weights W_t (soft memberships).
        terms_t = [reg_terms(l.weight, p) for l, p in zip(self.layers, self._prob)]
        self._zero_grad()
        saved = copy.deepcopy(self.model.state_dict())  # weights, BN statistics, group logits
        self.trial_optimizer.load_state_dict(copy.deepcopy(self.optimizer.state_dict()))
        # 2. Soft penalty step, then W_0 := W.
        self._penalty_step([t.dR_dw() for t in terms_t])
        w0 = [l.weight.detach().clone() for l in self.layers]
        # 3. Trial step on the same mini-batch with a copy of the optimizer (momentum included).
        self._trial_backward(x, y, amp, scaler)
        if amp and scaler is not None:
            scaler.step(self.trial_optimizer)
            scaler.update()
        else:
            self.trial_optimizer.step()
        # 4. At W': dR/dP into the logits' gradient, and the soft penalty step again.
        terms_trial = [reg_terms(l.weight, p) for l, p in zip(self.layers, self._prob)]
        pgrad = [t.dR_dp() for t in terms_trial]
        self._penalty_step([t.dR_dw() for t in terms_trial])
        # 5. Mixed second-order term with dW = W - W_0: the route by which the task loss reaches P.
        if self.second_order != "none":
            for i, (l, p, t) in enumerate(zip(self.layers, self._prob, terms_t)):
                delta = l.weight.detach() - w0[i]
                if self.second_order == "released":
                    pgrad[i] = pgrad[i] + released_second_order(t, delta)
                else:
                    pgrad[i] = pgrad[i] + exact_second_order(w0[i], p, delta)
        # 6. Restore the model, step the logits (lambda and the layer scale are not applied here).
        self._zero_grad()
        self.model.load_state_dict(saved)
        torch.stack([(p * g).sum() for p, g in zip(self._prob, pgrad)]).sum().backward()
        self.group_optimizer.step()
        # 7. The penalty step that persists, with the hard assignment.
        self._penalty_step([reg_terms(l.weight, hard_assignment(l.group.detach())).dR_dw() for l in self.layers])
        self._prob = []
        self.steps += 1

    @torch.no_grad()
    def stats(self) -> float:
        """Mean standard deviation of the group logits (the progress bar's STD)."""
        return float(sum(l.group.std().item() for l in self.layers) / len(self.layers))

    def forward(self, x):
        return self.model(x)

    # -- internals ---------------------------------------------------------------------------------
    def _zero_grad(self):
        self.optimizer.zero_grad(set_to_none=True)
        self.group_optimizer.zero_grad(set_to_none=True)

    def penalty_coefficient(self) -> float:
        """lambda * lr_t * (t + 1) / T: the linear ramp over the whole group-learning run."""
        return self.reg * self.optimizer.param_groups[0]["lr"] * (self.steps + 1) / self.total_steps

    @torch.no_grad()
    def _penalty_step(self, grads: list[torch.Tensor]) -> None:
        coef = self.penalty_coefficient()
        for layer, scale, g in zip(self.layers, self.scales, grads):
            layer.weight.add_(g.view_as(layer.weight), alpha=-coef * scale)

    def _trial_backward(self, x, y, amp, scaler):
        if self.backward_fn is not None:
            self.backward_fn(x, y)
            return
        with torch.autocast(x.device.type, enabled=amp):
            loss = self.criterion(self.model(x), y)
        (scaler.scale(loss) if (amp and scaler is not None) else loss).backward()


def attach_prune_buffers(model: nn.Module, n_groups: int) -> list[nn.Conv2d]:
    """Register `group` (G x N) and `mask` (N x C x 1 x 1) buffers on every prunable conv (idempotent).

    This is the pruned-model format: a CifarResNet/torchvision ResNet state dict plus these buffers.
    """
    layers = [m for _, m in prunable_convs(model)]
    for layer in layers:
        if not hasattr(layer, "mask"):
            dev = layer.weight.device
            layer.register_buffer("group", torch.zeros(n_groups, layer.out_channels, device=dev))
            layer.register_buffer("mask", torch.ones(layer.out_channels, layer.in_channels, 1, 1, device=dev))
    return layers


class PruneWrapper(nn.Module):
    """Group-channel pruning to a FLOPs target, and mask keeping during fine-tuning (notes 1.5)."""

    def __init__(
        self,
        model: nn.Module,
        n_groups: int,
        fp_every_nth_conv: int | None = None,
        fp_layer_indices=None,
        rank: int = 0,
        *,
        empty_group: str = "prune",
        cascade_passes: int = 125,
        cascade_batch: int = 80,
        generator: torch.Generator | None = None,
        verbose: bool = True,
        max_miss: float = MAX_MISS,
    ):
        super().__init__()
        if empty_group not in ("prune", "keep"):
            raise ValueError(f"empty_group must be 'prune' or 'keep', got {empty_group!r}")
        check_groups(model, n_groups)
        self.model, self.n_groups, self.rank = model, n_groups, rank
        self.empty_group, self.cascade_passes, self.cascade_batch = empty_group, cascade_passes, cascade_batch
        self.generator, self.verbose, self.max_miss = generator, verbose, max_miss
        self.layers = attach_prune_buffers(model, n_groups)
        self.layer_names = [n for n, _ in prunable_convs(model)]
        fp = filter_pruned_indices(len(self.layers), fp_every_nth_conv, fp_layer_indices)
        self.fp_layers = [self.layers[i] for i in fp if i < len(self.layers)]
        self.beta = 0.0
        _probe_layers(model, self.layers)

    # -- the authors' API ------------------------------------------------------------------------
    def initialize(self, rate: float, n_iter: int = 10) -> tuple[float, float]:
        """Bisect beta so that ~rate x 100 % of the prunable-conv FLOPs are pruned; return (pflops, pparams).

        As released: beta starts at 0.15 in [0, 1]; every trial prunes (cascade included) and restores
        the state; the final prune uses the last *updated* beta, which was never evaluated itself.
        What that guarantees: when pruned FLOPs grow with beta, the final beta lies between two tried
        betas that bracket the target, so the result lands near the target on either side (a little
        below it too: -0.024 points were measured); `-p` is a target, not a floor. With the released
        `empty_group='prune'` pruned FLOPs are not monotonic in beta (a group whose smallest channel
        share exceeds beta loses every channel), and the search can end far off, even at a 100 %
        pruned model: a result more than `max_miss` points from the target stops with an error.
        """
        if not 0 < rate < 1:
            raise UserError(f"-p/--prune must be in (0, 1), got {rate}")
        self._set_hard()
        saved = copy.deepcopy(self.model.state_dict())
        self.beta, lower, upper = 0.15, 0.0, 1.0
        self._say(
            f"pruning to -p {rate}: {n_iter} bisection trials and the final prune, each with a dead-unit "
            f"cascade of {self.cascade_passes} passes of {self.cascade_batch} random images "
            "(--bisection-steps, --cascade-passes)"
        )
        t0 = time.time()
        for i in range(n_iter):
            tried = self.beta
            pflops, _ = self.prune(desc=f"trial {i + 1}/{n_iter}")
            if pflops > rate * 100:
                self.beta, upper = (self.beta + lower) / 2, self.beta
            else:
                self.beta, lower = (self.beta + upper) / 2, self.beta
            self.model.load_state_dict(saved)
            self._say(
                f"  bisection trial {i + 1}/{n_iter}: beta {tried:.6f} prunes {pflops:.2f} % of the prunable-conv "
                f"FLOPs (target {100 * rate:.2f} %), {time.time() - t0:.0f} s so far"
            )
        pflops, pparams = self.prune(verbose=self.verbose, desc="final prune")
        self._check_target(rate, pflops, n_iter)
        return pflops, pparams

    def _check_target(self, rate: float, pflops: float, n_iter: int) -> None:
        if abs(pflops - 100 * rate) <= self.max_miss:
            return
        hint = (
            "with --empty-group prune (the released quirk) a group whose every channel holds more than "
            "beta of its energy loses all of them, so pruned FLOPs are not monotonic in beta; rerun with "
            "--empty-group keep"
            if self.empty_group == "prune"
            else "pruned FLOPs jump in steps too large for the target; try more --bisection-steps or another -p"
        )
        raise UserError(
            f"pruning to -p {rate} ended at {pflops:.2f} % of the prunable-conv FLOPs pruned (beta "
            f"{self.beta:.6f} after {n_iter} bisection steps), more than {self.max_miss:g} points from the "
            f"target; {hint}"
        )

    def after_step(self) -> None:
        """Keep pruned kernels at zero, and beta = 0 wherever gamma = 0 (pruned channels output 0)."""
        with torch.no_grad():
            for layer in self.layers:
                layer.weight.mul_(layer.mask)
            for m in self.model.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.bias.mul_((m.weight != 0).to(m.bias.dtype))

    # -- pruning -----------------------------------------------------------------------------------
    @torch.no_grad()
    def _set_hard(self):
        self._prob = [hard_assignment(l.group) for l in self.layers]

    def _threshold_keep(self, imp: torch.Tensor) -> torch.Tensor:
        """imp (rows x items), each row summing to 1: keep items above the row's threshold, where the
        threshold is the largest value whose ascending cumulative share stays below beta."""
        ranked = imp.sort(dim=-1).values
        count = (ranked.cumsum(dim=-1) < self.beta).sum(dim=-1)  # items that fall under beta
        # Released quirk: count == 0 indexes [-1], the largest value, so nothing is kept.
        th = ranked.gather(-1, ((count - 1) % ranked.shape[-1]).unsqueeze(-1))
        keep = imp > th
        if self.empty_group == "keep":
            keep = torch.where((count == 0).unsqueeze(-1), torch.ones_like(keep), keep)
        return keep

    @torch.no_grad()
    def _find_mask(self, layer: nn.Conv2d, prob: torch.Tensor) -> None:
        """Group-channel mask: per group, drop the input channels holding the lowest beta share of the
        group's squared weight energy; a filter's mask row is its group's channel mask."""
        energy = layer.weight.pow(2).sum(dim=(2, 3))  # (N, C)
        imp = prob.pow(2) @ energy  # (G, C)
        imp = imp / (imp.sum(dim=1, keepdim=True) + 1e-12)
        keep = self._threshold_keep(imp).to(prob.dtype)  # (G, C)
        layer.mask.copy_((prob.t() @ keep)[:, :, None, None])

    @torch.no_grad()
    def _find_mask_fp(self, layer: nn.Conv2d) -> None:
        """Filter pruning with the same beta over the filters' squared weight energy."""
        imp = layer.weight.pow(2).sum(dim=(1, 2, 3))
        imp = imp / (imp.sum() + 1e-12)
        keep = self._threshold_keep(imp[None])[0].to(layer.mask.dtype)
        layer.mask.mul_(keep[:, None, None, None])

    def _say(self, text: str) -> None:
        if self.verbose and self.rank == 0:
            print(text, flush=True)

    def prune(self, verbose: bool = False, desc: str = "") -> tuple[float, float]:
        """Masks at the current beta, then the dead-unit cascade, then the FLOPs/params summary."""
        if not hasattr(self, "_prob"):
            self._set_hard()
        with torch.no_grad():
            for layer, prob in zip(self.layers, self._prob):
                self._find_mask(layer, prob)
            for layer in self.fp_layers:
                self._find_mask_fp(layer)
            for layer in self.layers:
                layer.weight.mul_(layer.mask)
        self._dead_unit_cascade(desc)
        return self.summary(verbose)

    def _dead_unit_cascade(self, desc: str = "") -> None:
        """Accumulate gradients of random inputs/labels (released: 125 passes of 80 images, model in its
        current mode) and zero every filter/channel/BN unit whose gradient is exactly zero."""
        model = self.model
        device = self.layers[0].weight.device
        model.zero_grad(set_to_none=True)
        bar = progress(self.cascade_passes, f"cascade {desc}".strip(), self.verbose and self.rank == 0, leave=False)
        with torch.enable_grad():
            for _ in range(self.cascade_passes):
                bar.update()
                x = torch.randn(
                    self.cascade_batch, 3, PROBE_SIZE, PROBE_SIZE, generator=self.generator, device="cpu"
                ).to(device)
                out = model(x)
                y = torch.randint(0, out.shape[1], (self.cascade_batch,), generator=self.generator).to(device)
                F.cross_entropy(out, y).backward()
        bar.close()
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, nn.Conv2d) and m.weight.grad is not None:
                    g = m.weight.grad.abs()
                    alive_out = (g.sum(dim=(1, 2, 3), keepdim=True) > 0).to(m.weight.dtype)
                    alive_in = (g.sum(dim=(0, 2, 3), keepdim=True) > 0).to(m.weight.dtype)
                    m.weight.mul_(alive_out).mul_(alive_in)
                    if hasattr(m, "mask"):
                        m.mask.mul_(alive_out).mul_(alive_in)
                elif isinstance(m, nn.BatchNorm2d) and m.weight.grad is not None:
                    alive = (m.weight.grad.abs() > 0).to(m.weight.dtype)
                    m.weight.mul_(alive)
                    m.bias.mul_(alive)
        model.zero_grad(set_to_none=True)

    @torch.no_grad()
    def summary(self, verbose: bool = False, init: bool = False) -> tuple[float, float]:
        """% of prunable-conv FLOPs and params pruned, counted at kernel granularity (DSP convention)."""
        if init or not hasattr(self, "_prob"):
            self._set_hard()
        kept_flops = kept_params = total_flops = total_params = 0.0
        for i, (layer, prob) in enumerate(zip(self.layers, self._prob)):
            kernels = (layer.weight.abs().sum(dim=(2, 3)) > 0).float()  # (N, C)
            frac = kernels.sum().item() / kernels.numel()
            kept_flops += layer.dsp_flops * frac
            kept_params += layer.weight.numel() * frac
            total_flops += layer.dsp_flops
            total_params += layer.weight.numel()
            if verbose and self.rank == 0:
                remaining = prob @ kernels  # (G, C): kept filters of each group per channel
                channels = (remaining > 0).sum(dim=1)
                filters = (remaining.sum(dim=1) / (channels + 1e-8)).round().long()
                structure = " ".join(f"({f},{c})" for f, c in zip(filters.tolist(), channels.tolist()))
                print(
                    f"[{i}] {self.layer_names[i]}: {100 * frac:.2f}% kernels kept; (filters, channels) "
                    f"per group: {structure}"
                )
        pflops = 100 * (1 - kept_flops / total_flops)
        pparams = 100 * (1 - kept_params / total_params)
        if verbose and self.rank == 0:
            print(
                f"beta {self.beta:.6f}: FLOPs {int(kept_flops):,} ({pflops:.2f}% pruned), "
                f"params {int(kept_params):,} ({pparams:.2f}% pruned)"
            )
        return pflops, pparams

    def forward(self, x):
        return self.model(x)
