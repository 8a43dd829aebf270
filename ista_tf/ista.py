"""ISTA on batch-norm scales (Ye et al., ICLR 2018, Sec. 4), in the paper's vocabulary.

- rho: the global penalty (`--l1_penalty`); lambda_l: the per-layer penalty weight, the memory cost
  per channel of layer l over the input image area (paper Sec. 4.1 step 1; released code: Transformer,
  priority 'memory'; research/ista.md 2.3);
- the update (paper Eq. (1)-(2)): a plain SGD step (no momentum) on every variable, then on each
  penalised gamma the proximal step gamma <- prox_{mu_t rho lambda_l}(gamma),
  prox_eta(x) = sign(x) max(|x| - eta, 0) (released code: thr = lambda_l * lr_t * l1_penalty);
- the two quantities the original logs: "group lasso" and "fake sparsity" (research/ista.md 2.4);
- the gamma-W rescaling trick with alpha (paper Sec. 4.1 steps 2 and 5; not in the released code).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from ista_tf.models import PrunableUnit

NUM_PIXELS = 32 * 32  # I_w * I_h, the input image area lambda_l is normalised by (Transformer num_pixels)
NUM_EXAMPLES_PER_EPOCH = 50_000  # cifar10.py constant behind the learning-rate decay, whatever the data
NUM_EPOCHS_PER_DECAY = 350
LEARNING_RATE_DECAY_FACTOR = 0.1


# ----------------------------------------------------------------------------------------------------
# Per-layer penalty weights lambda_l
# ----------------------------------------------------------------------------------------------------


def penalty_weight(unit: PrunableUnit) -> float:
    """lambda_l = (H_l W_l + k_h k_w C_in + C'_out k'_h k'_w) / (I_w I_h).

    H_l W_l: output map of the conv; k_h k_w C_in: its kernel, at its current (possibly compressed)
    input width; the last term is the next conv's cost at the full model's widths, as the released code
    hard-codes it (`add_to_cost`; research/ista.md 2.3 and 6.9). The logits layer is not a unit: its
    lambda is 0 and its gamma is never shrunk.
    """
    kh, kw = int(unit.conv.kernel.shape[0]), int(unit.conv.kernel.shape[1])
    return (unit.out_hw * unit.out_hw + kh * kw * unit.conv.c_in + unit.next_cost) / NUM_PIXELS


def penalty_weights(model) -> dict[str, float]:
    """{conv label: lambda_l} for every penalised layer of the model."""
    return {unit.label: penalty_weight(unit) for unit in model.units()}


def weight_edge_count(model) -> float:
    """sum_l lambda_l C_l, the "weight edge count" the original prints when building the graph
    (345.0 for the full resnet20)."""
    return float(sum(penalty_weight(u) * u.bn.channels for u in model.units()))


# ----------------------------------------------------------------------------------------------------
# The proximal step
# ----------------------------------------------------------------------------------------------------


def proximal_step(gamma: tf.Tensor, threshold) -> tf.Tensor:
    """Eq. (2): prox_eta(gamma) = sign(gamma) max(|gamma| - eta, 0); exactly 0 where |gamma| <= eta."""
    return tf.sign(gamma) * tf.nn.relu(tf.abs(gamma) - threshold)


def learning_rate(initial: float, step: tf.Tensor, batch_size: int) -> tf.Tensor:
    """The original's staircase exponential decay: x0.1 every 350 epochs of 50,000 images, i.e. every
    140,000 steps at batch 125. No stage of the README reaches it, so lr is constant in practice."""
    decay_steps = int(NUM_EXAMPLES_PER_EPOCH / batch_size * NUM_EPOCHS_PER_DECAY)
    exponent = tf.cast(tf.math.floordiv(tf.cast(step, tf.int64), decay_steps), tf.float32)
    return initial * tf.pow(LEARNING_RATE_DECAY_FACTOR, exponent)


class IstaSGD:
    """Plain SGD (no momentum) on every variable, then the proximal step on each penalised gamma with
    threshold lr_t * rho * lambda_l (paper Eq. (2); research/ista.md 2.2). With rho = 0 (fine-tuning) it
    is plain SGD, as the original switches to GradientDescentOptimizer."""

    def __init__(self, variables: Sequence[tf.Variable], model, l1_penalty: float):
        if l1_penalty < 0:
            raise ValueError(f"l1_penalty must be >= 0, got {l1_penalty}")
        self.variables = list(variables)
        self.l1_penalty = float(l1_penalty)
        self.penalised = [(u.bn.gamma, penalty_weight(u)) for u in model.units()]

    def __call__(self, grads: Sequence[tf.Tensor], lr: tf.Tensor) -> None:
        for var, grad in zip(self.variables, grads):
            var.assign_sub(lr * grad)  # Eq. (1): gradient step with the mini-batch gradient
        if self.l1_penalty > 0:
            for gamma, lam in self.penalised:
                # released code: thr = lambda_l * lr_t * l1_penalty
                gamma.assign(proximal_step(gamma, lr * (self.l1_penalty * lam)))


# ----------------------------------------------------------------------------------------------------
# Logged quantities (research/ista.md 2.4), from the raw (not averaged) gammas
# ----------------------------------------------------------------------------------------------------


def group_lasso(gammas: dict[str, np.ndarray], lambdas: dict[str, float]) -> float:
    """sum_l lambda_l ||gamma_l||_1, without rho (the original resets the cost dict, so rho is absent)."""
    return float(sum(lambdas[k] * np.abs(g).sum() for k, g in gammas.items()))


def fake_sparsity(gammas: dict[str, np.ndarray], lambdas: dict[str, float]) -> float:
    """sum_l lambda_l #{gamma_l == 0} / sum_l lambda_l C_l: a lambda-weighted fraction of exactly-zero
    gammas, NOT the parameter reduction (README: 0.34 while 37% of parameters go)."""
    zero = sum(lambdas[k] * np.count_nonzero(g == 0) for k, g in gammas.items())
    total = sum(lambdas[k] * g.size for k, g in gammas.items())
    return float(zero / total) if total else 0.0


def raw_gammas(model) -> dict[str, np.ndarray]:
    """{conv label: gamma values} of the penalised BNs."""
    return {u.label: u.bn.gamma.numpy() for u in model.units()}


# ----------------------------------------------------------------------------------------------------
# The gamma-W rescaling trick (paper Sec. 4.1, steps 2 and 5)
# ----------------------------------------------------------------------------------------------------


def rescale_gamma_w(model, alpha: float) -> None:
    """gamma_l <- alpha gamma_l and W_{l+1} <- W_{l+1} / alpha for every penalised layer.

    beta_l is scaled by alpha as well: ReLU(alpha z) / alpha = ReLU(z) for alpha > 0, so the network
    computes the same function, while the gradients (and hence the ISTA dynamics) change. The paper's
    display equation for step 2 is missing from our copy (research/ista.md 1); scaling beta is what
    keeps the output unchanged. Step 5 (scale back) is rescale_gamma_w(model, 1 / alpha).
    """
    if alpha <= 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    if alpha == 1:
        return
    for unit in model.units():
        unit.bn.gamma.assign(unit.bn.gamma * alpha)
        unit.bn.beta.assign(unit.bn.beta * alpha)
        unit.next_conv.kernel.assign(unit.next_conv.kernel / alpha)
