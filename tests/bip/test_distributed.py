"""Equivalences of the training machinery on both levels of the bilevel step: 2 gloo processes and 2
accumulated micro-batches equal one process on the same global batch (released BiP and the paper's A1)."""

import os
import socket
import subprocess
import sys

import pytest
import torch

from shared.torch_train import DistContext
from tests.conftest import REPO

pytestmark = [pytest.mark.torch, pytest.mark.slow]
WORKER = str(REPO / "tests" / "bip" / "ddp_worker.py")


def _port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _two_processes(out):
    """Rank 0 in a subprocess (it saves its states), rank 1 in this process, over gloo on loopback: one
    torch import less than two subprocesses; what is tested is the machinery inside the ranks."""
    import torch.distributed as dist

    from tests.bip.ddp_worker import train

    port = _port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "WORLD_SIZE": "2", "RANK": "0",
           "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}  # fmt: skip
    proc = subprocess.Popen([sys.executable, WORKER, str(out)], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=1, world_size=2)
        ctx = DistContext(rank=1, world_size=2)
        mine = {"released": train(ctx, False), "paper": train(ctx, True)}
        dist.barrier()  # the worker's last collective: rank 0 has saved its states
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
        _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    return torch.load(out, weights_only=True), mine


def _worst(a, b):
    assert a.keys() == b.keys()
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


def test_two_processes_and_accumulation_equal_one_process(tmp_path):
    from tests.bip.ddp_worker import train

    ddp, rank1 = _two_processes(tmp_path / "ddp.pt")
    for variant, paper in (("released", False), ("paper", True)):
        one = train(DistContext(), paper)
        assert _worst(one, ddp[variant]) < 1e-6, variant
        assert _worst(one, rank1[variant]) < 1e-6, variant  # both ranks end in the same state
        assert _worst(one, train(DistContext(), paper, accum=2)) < 1e-6, variant
