"""The baselines BiP compares with, in the same masked-layer machinery.

- OMP (`--exp-mode finetune --baseline omp --source-net DENSE --k K`): one-shot GLOBAL magnitude pruning
  of the trained dense net (scores := |weights|, a separate tensor, never trained), then fine-tuning of
  the kept weights with the mask fixed. (HYDRA's "LWM" is the layer-wise form of the same thing.)
- IMP (`--exp-mode finetune --baseline imp --source-net DENSE --k K`): rounds of pruning 20 % of the
  weights left (global magnitude of the trained weights among the kept ones), rewinding the weights to
  the source net and retraining for --epochs, until k = K (round r keeps 0.8^r, the last round exactly
  K). The paper follows Ma et al. 2021 for IMP/OMP; the rewinding point, epochs and lr per round are not
  given in what we could read, so this recipe is INFERRED (recorded in the run record's variant).
"""

from __future__ import annotations

import math
import time

import torch

from bip_torch import layers as L

# The README's k grid: IMP's 20 % series rounded as BiP's figures label it.
README_GRID = (0.8, 0.64, 0.512, 0.41, 0.328, 0.262, 0.2097, 0.1678, 0.1342, 0.1074, 0.0859, 0.0687, 0.055, 0.044,
               0.035, 0.028, 0.0225, 0.018, 0.0144, 0.0115, 0.0092)  # fmt: skip


def imp_schedule(k: float, rate: float = 0.2) -> list[float]:
    """Kept fractions of the IMP rounds that end at k: the README grid (0.8, 0.64, ..., k) at rate 0.2,
    else (1 - rate)^r."""
    if abs(rate - 0.2) < 1e-12 and k >= README_GRID[-1]:
        return [g for g in README_GRID if g > k + 1e-9] + [k]
    rounds = max(1, round(math.log(k) / math.log(1 - rate)))
    return [(1 - rate) ** r for r in range(1, rounds)] + [k]


@torch.no_grad()
def magnitude_scores_within(model, previous: dict | None) -> None:
    """scores := |weight| on the kept entries, 0 on the pruned ones (so they stay pruned)."""
    for name, m in L.masked_modules(model):
        s = m.weight.detach().abs().clone()
        if previous is not None:
            s *= previous[name]
        m.popup_scores.data = s


def run_imp(r, opt, mask_opt) -> dict:
    a, model = r.args, r.model
    rewind = {k: v.clone() for k, v in model.state_dict().items() if not k.endswith("popup_scores")}
    ks = imp_schedule(float(a.k), a.imp_rate)
    previous, result, seconds = None, None, []
    final_k = float(a.k)
    for i, k in enumerate(ks, 1):
        magnitude_scores_within(model, previous)
        L.set_prune_rate(model, k)
        a.k = k  # this round's checkpoints and record carry its own k
        previous = L.hard_masks(model)
        model.load_state_dict(rewind, strict=False)  # weights and BN back to the source net
        L.switch_to_finetune(model)
        opt, mask_opt = r.optimizers()  # fresh momentum each round
        r.log(f"IMP round {i}/{len(ks)}: k = {k:.4f}, sparsity {100 * L.sparsity_report(model)['sparsity']:.2f} %")
        t0 = time.time()
        result = r.fit(opt, mask_opt, tag=f"IMP round {i}/{len(ks)} ")
        seconds.append(time.time() - t0)
        if result["interrupted"]:
            break
        r.record(result, {"imp_round": i, "round_seconds": seconds[-1], "cumulative_seconds": sum(seconds)})
    a.k = final_k
    result["round_seconds"] = seconds
    return result
