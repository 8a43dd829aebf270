"""The runtimes the README names, each running DCP end to end (the runs start in the background,
conftest.py): 2 mirrored CPU replicas agree with one device on a block fine-tuning step and pick the same
channel; `--enbl_multi_gpu --logical_cpus 2`, `--xla` and `--enbl_multi_gpu` under 2 multi-worker
processes (TF_CONFIG on loopback ports) each run a tiny job through the entry point; PocketFlow's
iteration counts are divided by the number of replicas."""

from __future__ import annotations

import json

import pytest

from shared import archs

pytestmark = [pytest.mark.tf, pytest.mark.slow]

TIMEOUT = 900  # generous: the runs share the cores with the other tests (about 340 s at load 12 on 2 cores)


@pytest.fixture(scope="module")
def mirrored(runtime_runs):
    code, out, err = runtime_runs["mirrored"].result(timeout=TIMEOUT)
    assert code == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def workers(runtime_runs):
    results = []
    for index, run in enumerate(runtime_runs["workers"]):
        code, out, err = run.result(timeout=TIMEOUT)  # a worker left alone waits for its peer: bounded
        assert code == 0, f"worker {index} failed:\n{err[-3000:]}"
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def check_tiny_job(run: dict, variant: str) -> dict:
    """A finished tiny job (ResNet-8 at 0.9375): exact kept counts, exact zeros, a real accuracy."""
    assert run["code"] == 0, run["stderr"]
    out = run["summary"]
    for label, (k, c_in) in out["kept"].items():
        assert k == archs.dcp_kept(c_in, 0.9375), label
    assert len(out["kept"]) == (3 if variant == "paper" else 9)  # conv2 of 3 blocks / all 10 convs but the stem
    assert out["nonzero_in_pruned_slices"] == 0
    assert 0.0 <= out["top1"] <= 1.0
    return out


def test_two_replicas_agree_with_one(mirrored):
    out = mirrored["replicas"]
    assert out["one"]["replicas"] == 1 and out["two"]["replicas"] == 2
    assert out["one"]["iters"] == 10000 and out["two"]["iters"] == 5000
    assert out["moved"] > 1e-4  # the Adam step changed the weights...
    assert out["max_var_diff"] < 1e-4  # ...identically on 2 replicas (synchronised BN, summed gradients)
    assert out["score_rel_diff"] < 1e-4 and out["pick_one"] == out["pick_two"]


def test_enbl_multi_gpu_on_two_logical_cpus_end_to_end(mirrored):
    base = mirrored["mirrored_full_prec"]
    assert base["code"] == 0, base["stderr"]
    assert base["summary"]["replicas"] == 2 and base["summary"]["steps"] == 4
    out = check_tiny_job(mirrored["mirrored"], "pocketflow")
    assert out["replicas"] == 2 and out["iters_block"] == 2  # dcp_nb_iters_block 4 / 2 replicas


def test_xla_end_to_end(mirrored):
    out = check_tiny_job(mirrored["xla"], "paper")
    assert out["replicas"] == 1 and mirrored["xla"]["config_xla"] is True


def test_two_multiworker_processes_end_to_end_and_agree(workers):
    a, b = workers
    assert {a["task"], b["task"]} == {0, 1}
    for w in workers:
        assert w["full_prec"]["code"] == 0, w["full_prec"]["stderr"]
        assert w["full_prec"]["summary"]["replicas"] == 2
        out = check_tiny_job(w["dcp"], "pocketflow")
        assert out["replicas"] == 2 and out["iters_block"] == 2
    # one model trained by both: the same channels, the same accuracy on every worker
    assert a["dcp"]["summary"]["kept"] == b["dcp"]["summary"]["kept"]
    assert a["dcp"]["summary"]["top1"] == b["dcp"]["summary"]["top1"]
    assert a["full_prec"]["summary"]["top1"] == b["full_prec"]["summary"]["top1"]
