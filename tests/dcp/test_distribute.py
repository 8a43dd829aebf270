"""tf.distribute: two mirrored CPU replicas agree with one device on a block fine-tuning step and pick
the same channel; PocketFlow's iteration counts are divided by the number of workers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.tf, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


def test_two_replicas_agree_with_one():
    proc = subprocess.run([sys.executable, "-m", "tests.dcp.replica_check"], cwd=REPO, capture_output=True,
                          text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["one"]["replicas"] == 1 and out["two"]["replicas"] == 2
    assert out["one"]["iters"] == 10000 and out["two"]["iters"] == 5000
    assert out["moved"] > 1e-4  # the Adam step changed the weights...
    assert out["max_var_diff"] < 1e-4  # ...identically on 2 replicas (synchronised BN, summed gradients)
    assert out["score_rel_diff"] < 1e-4 and out["pick_one"] == out["pick_two"]
