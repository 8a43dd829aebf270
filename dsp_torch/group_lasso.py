"""The group-channel regulariser of DSP and its derivatives, vectorised over groups.

Notation for one prunable conv: weights W (N filters, C input channels, k x k), group memberships
P (G groups x N filters; soft from the Gumbel-softmax, or one-hot). A *group channel* (g, c) is input
channel c restricted to the filters of group g.

    lasso[g, c] = || P[g, :] * W[:, c] ||_2              (norm of group channel (g, c))
    s[g]        = (sum_n P[g, n] ** 0.5) ** 2             (0.5 quasi-norm of the membership; = n_g^2 one-hot)
    R(W, P)     = sum_g s[g] * sum_c lasso[g, c]          (the layer's regulariser)

The released code never adds R to the loss: it takes explicit gradient steps on W with dR/dW and
trains the group logits with dR/dP (see `dsp_module.GroupWrapper`). The small epsilons (1e-8, 1e-12)
are the released code's.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

ORDER = 0.5  # the quasi-norm order of s(P)


@dataclass
class RegTerms:
    """Pieces of R at one (W, P): enough for dR/dW, dR/dP and the released mixed second-order term."""

    s: torch.Tensor  # (G,)
    lasso: torch.Tensor  # (G, C)
    normalized: torch.Tensor  # (G, N, C, K): P W / (1e-8 + lasso)
    dlasso_dw: torch.Tensor  # (G, N, C, K): P^2 W / (1e-8 + lasso)
    dlasso_dp: torch.Tensor  # (G, N): d(sum_c lasso)/dP
    ds_dp: torch.Tensor  # (G, N)

    def dR_dw(self) -> torch.Tensor:
        """(N, C, K): sum_g s[g] * dlasso/dW (the weight gradient of R)."""
        return torch.einsum("g,gnck->nck", self.s, self.dlasso_dw)

    def dR_dp(self) -> torch.Tensor:
        """(G, N): s * dlasso/dP + (sum_c lasso) * ds/dP."""
        return self.s[:, None] * self.dlasso_dp + self.lasso.sum(1, keepdim=True) * self.ds_dp


def reg_terms(weight: torch.Tensor, prob: torch.Tensor) -> RegTerms:
    """Evaluate R's pieces for conv weight (N, C, kh, kw) and memberships prob (G, N); no autograd."""
    n, c = weight.shape[:2]
    w = weight.detach().reshape(n, c, -1)  # (N, C, K)
    p = prob.detach()
    gw = p[:, :, None, None] * w  # (G, N, C, K)
    lasso = gw.pow(2).sum(dim=(1, 3)).sqrt()  # (G, C)
    normalized = gw / (1e-8 + lasso[:, None, :, None])
    dlasso_dw = p[:, :, None, None] * normalized
    dlasso_dp = (w[None] * normalized).sum(dim=(2, 3))  # (G, N)
    p_order = p.pow(ORDER)
    p_order_sum = p_order.sum(1, keepdim=True)  # (G, 1)
    s = p_order_sum.pow(1 / ORDER)  # (G, 1)
    ds_dp = p_order * s / (p * p_order_sum + 1e-8)  # d s / d P, as the released code writes it
    return RegTerms(s[:, 0], lasso, normalized, dlasso_dw, dlasso_dp, ds_dp)


def regularizer_value(weight: torch.Tensor, prob: torch.Tensor) -> torch.Tensor:
    """R(W, P) with autograd (for tests and the exact second-order variant)."""
    n, c = weight.shape[:2]
    gw = prob[:, :, None, None] * weight.reshape(n, c, -1)[None]
    lasso = gw.pow(2).sum(dim=(1, 3)).sqrt()
    s = prob.pow(ORDER).sum(1).pow(1 / ORDER)
    return (s * lasso.sum(1)).sum()


def released_second_order(terms: RegTerms, delta_w: torch.Tensor) -> torch.Tensor:
    """The released code's mixed term d2R/dPdW . dW, per filter (G, N).

    It contracts each filter's own slice only (sums over c and the kernel, not over the other filters),
    so it is a per-filter approximation of the exact mixed derivative (`exact_second_order`). The
    pieces come from the weights before the trial step; delta_w is the trial step's weight change.
    """
    n, c = delta_w.shape[:2]
    dw = delta_w.detach().reshape(n, c, -1)[None]  # (1, N, C, K)
    along = (terms.dlasso_dw * dw).sum(dim=(2, 3))  # (G, N)
    second = (2 * terms.normalized * dw).sum(dim=(2, 3))
    # The released code divides by lasso here without its epsilon; clamp to avoid 0/0 on dead channels.
    per_lasso = (terms.dlasso_dw * dw / terms.lasso[:, None, :, None].clamp_min(1e-12)).sum(dim=(2, 3))
    return terms.ds_dp * along + terms.s[:, None] * (second - terms.dlasso_dp * per_lasso)


def exact_second_order(weight: torch.Tensor, prob: torch.Tensor, delta_w: torch.Tensor) -> torch.Tensor:
    """d/dP <dR/dW (W, P), dW>, the exact mixed derivative, by double backward (G, N)."""
    with torch.enable_grad():
        w = weight.detach().clone().requires_grad_(True)
        p = prob.detach().clone().requires_grad_(True)
        (grad_w,) = torch.autograd.grad(regularizer_value(w, p), w, create_graph=True)
        (grad_p,) = torch.autograd.grad((grad_w * delta_w.detach()).sum(), p)
    return grad_p


def layer_scale(input_numel: int, kernel_size: int, n_groups: int, n_filters: int, form: str) -> float:
    """Per-layer weight of the penalty step.

    'activation' (released code at HEAD, made the CIFAR checkpoints):
        sqrt(C_in H_in W_in / (16 * 32 * 32)) * k * (G / N) ** 1.5
    'kernel' (first code release, 2023-02-02; most likely the paper's): k * (G / N) ** 1.5
    """
    base = kernel_size * (n_groups / n_filters) ** 1.5
    if form == "activation":
        return (input_numel / (16 * 32 * 32)) ** 0.5 * base
    if form == "kernel":
        return base
    raise ValueError(f"unknown regulariser scale {form!r}")
