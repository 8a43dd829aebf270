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

import torch

from bip_torch import layers as L


def imp_schedule(k: float, rate: float = 0.2) -> list[float]:
    """Kept fractions of the IMP rounds that end at k: 0.8, 0.64, ..., k."""
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
    for i, k in enumerate(ks, 1):
        magnitude_scores_within(model, previous)
        L.set_prune_rate(model, k)
        previous = L.hard_masks(model)
        model.load_state_dict(rewind, strict=False)  # weights and BN back to the source net
        L.switch_to_finetune(model)
        opt, mask_opt = r.optimizers()  # fresh momentum each round
        r.log(f"IMP round {i}/{len(ks)}: k = {k:.4f}, sparsity {100 * L.sparsity_report(model)['sparsity']:.2f} %")
        import time

        t0 = time.time()
        result = r.fit(opt, mask_opt, tag=f"IMP round {i}/{len(ks)} ")
        seconds.append(time.time() - t0)
        if result["interrupted"]:
            break
    result["round_seconds"] = seconds
    return result
