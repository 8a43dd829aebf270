"""Two bilevel iterations (released BiP and the paper's A1) on fixed batches; rank 0 saves both states.

    python -m torch.distributed.run --nproc_per_node 2 tests/bip/ddp_worker.py OUT
    (the test runs rank 0 as a subprocess with the environment variables torchrun would set, rank 1
    in its own process)
    (the test calls `train()` in its own process for the one-process and accumulated references)

Each process takes its contiguous share of every global batch. BN runs on fixed running statistics
(eval mode), so that the result does not depend on how the batch is split: what is compared is the
machinery (gradient averaging at both levels, the implicit-gradient product on global gradients).
"""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bip_torch import layers as L  # noqa: E402
from bip_torch.bilevel import Backward, Torch1SGD, bilevel_step, paper_optimizers, paper_step  # noqa: E402
from shared.torch_train import cleanup_distributed, setup_distributed  # noqa: E402
from tests.bip.tiny import batches, tiny  # noqa: E402


def train(ctx, paper: bool, accum: int = 1) -> dict:
    m = tiny()
    with torch.no_grad():
        m.bn.running_mean.uniform_(-0.3, 0.3)
        m.bn.running_var.uniform_(0.5, 1.5)
    m.eval()
    bw = Backward(ctx, accum)
    share = slice(ctx.rank * 8 // ctx.world_size, (ctx.rank + 1) * 8 // ctx.world_size)
    if paper:
        L.copy_scores_from_weights(m)
        lo, up = paper_optimizers(m, 0.05, 0.1)
    else:
        L.alias_scores_to_weights(m)
        lo, up = Torch1SGD(m.parameters(), 0.05, 0.9, 0.05), Torch1SGD(m.parameters(), 0.08, 0.9, 0.05)
    for it in range(2):
        (xl, yl), (xu, yu) = batches(10 + it, n=8), batches(20 + it, n=8)
        lower, upper = (xl[share], yl[share]), (xu[share], yu[share])
        if paper:
            paper_step(m, lo, up, lower, upper, bw, 0.7)
        else:
            bilevel_step(m, lo, up, lower, upper, bw, 0.5)
    return {k: v.clone() for k, v in m.state_dict().items()}


def main():
    out = sys.argv[1]
    torch.set_num_threads(1)
    ctx = setup_distributed("cpu")
    states = {"released": train(ctx, False), "paper": train(ctx, True)}
    if ctx.is_main:
        torch.save(states, out)
    if ctx.distributed:
        torch.distributed.barrier()
    cleanup_distributed()


if __name__ == "__main__":
    main()
