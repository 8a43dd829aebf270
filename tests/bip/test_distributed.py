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
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    launch = ["-m", "torch.distributed.run", "--nproc_per_node", "2", "--master-port", str(_port())]
    proc = subprocess.run([sys.executable, *launch, WORKER, str(out)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return torch.load(out, weights_only=True)


def _worst(a, b):
    assert a.keys() == b.keys()
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


def test_two_processes_and_accumulation_equal_one_process(tmp_path):
    from tests.bip.ddp_worker import train

    ddp = _two_processes(tmp_path / "ddp.pt")
    for variant, paper in (("released", False), ("paper", True)):
        one = train(DistContext(), paper)
        assert _worst(one, ddp[variant]) < 1e-6, variant
        assert _worst(one, train(DistContext(), paper, accum=2)) < 1e-6, variant
