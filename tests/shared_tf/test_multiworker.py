"""Multi-worker TF: 2 local CPU worker processes (TF_CONFIG on loopback ports) train like one process on
the same global batch, save at the same steps whatever their clocks say, and only the chief writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.background import free_ports
from tests.conftest import REPO

pytestmark = [pytest.mark.tf, pytest.mark.slow]


def test_two_workers_match_one_process_and_save_at_the_same_steps(tmp_path):
    workers = [f"127.0.0.1:{p}" for p in free_ports(2)]
    procs = []
    for index in range(2):
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
        env["TF_CONFIG"] = json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})
        out = tmp_path / f"worker{index}"
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "tests.shared_tf.multiworker_worker", str(tmp_path / "shared")],
                cwd=REPO,
                env=env,
                stdout=open(out.with_suffix(".out"), "w"),
                stderr=open(out.with_suffix(".err"), "w"),
            )
        )
    try:
        codes = [p.wait(timeout=300) for p in procs]  # a worker left alone waits for its peer: bounded
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    results = []
    for index, code in enumerate(codes):
        err = (tmp_path / f"worker{index}.err").read_text()
        assert code == 0, f"worker {index} failed:\n{err[-3000:]}"
        results.append(json.loads((tmp_path / f"worker{index}.out").read_text().strip().splitlines()[-1]))
    a, b = results
    assert a["replicas"] == b["replicas"] == 2
    assert a["chief"] and not b["chief"]  # worker 0 is the chief when the cluster has no chief task
    # the same model as one process on the same global batch: the weights moved far more than they differ
    for r in results:
        assert r["moved"] > 0.05
        assert r["max_diff"] < 1e-5
    # worker 0's clock is up after 2 steps, worker 1's after 4: both save when the first one's is
    assert a["saved"] == b["saved"] == [2, 4, 6]
    assert sorted(p.name for p in (tmp_path / "shared" / "ckpt").glob("ckpt-*.index")) == [
        "ckpt-2.index",
        "ckpt-4.index",
        "ckpt-6.index",
    ]
    # metrics written once (by the chief), one line per step
    lines = (tmp_path / "shared" / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2, 3, 4, 5, 6]
    assert len(list((tmp_path / "shared" / "run").glob("events.out.tfevents.*"))) == 1
    # ista_tf.cifar10_train --distribute multiworker: both exit 0 after 3 steps, checkpoints at the same
    # steps (a save nobody else joins would abort on a collective mismatch), only the chief writes
    assert a["ista_status"] == b["ista_status"] == 0
    chief_stage = tmp_path / "shared" / "ista_worker0" / "run_0"
    finished = json.loads((chief_stage / "finished.json").read_text())
    assert finished["result"]["steps"] == 3
    assert (tmp_path / "shared" / "ista_worker0" / "run_1" / "compact" / "arch.json").is_file()
    assert [json.loads(line)["step"] for line in (chief_stage / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]
    assert not [p for p in (tmp_path / "shared" / "ista_worker1").rglob("*") if p.is_file()]  # no file at all
