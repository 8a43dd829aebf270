"""shared.bench: statistics, paired timing order, headline ratio and verdicts, on synthetic timings
(no real timing is asserted anywhere)."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

from shared import bench
from tests.conftest import REPO


def test_summarize_quartiles_spread_and_extremes_by_hand():
    s = bench.summarize([4.0, 1.0, 100.0, 3.0, 2.0])  # sorted 1 2 3 4 100: quartiles at ranks 1, 2, 3
    assert (s.n, s.median, s.q1, s.q3, s.min, s.max) == (5, 3.0, 2.0, 4.0, 1.0, 100.0)
    assert s.iqr == 2.0 and s.spread == pytest.approx(2.0 / 3.0)
    assert s.range_spread == pytest.approx(99.0 / 3.0)
    # even count: linear interpolation between neighbours (numpy's default)
    s = bench.summarize([1.0, 2.0, 3.0, 4.0])
    assert (s.median, s.q1, s.q3) == (2.5, 1.75, 3.25)


@pytest.mark.parametrize("bad", [[], [1.0, float("nan")], [math.inf]])
def test_summarize_refuses_empty_and_non_finite_samples(bad):
    with pytest.raises(ValueError):
        bench.summarize(bad)


def test_paired_ratio_cancels_a_load_drift_that_hits_both():
    # the machine slows down 3x over the rounds; the per-round ratio stays exactly 2
    dense, pruned = [2.0, 4.0, 6.0], [1.0, 2.0, 3.0]
    r = bench.paired_ratio(dense, pruned)
    assert r.median == 2.0 and r.spread == 0.0
    assert bench.summarize(dense).spread == pytest.approx(0.5)  # unpaired: IQR 3..5 around 4
    with pytest.raises(ValueError):
        bench.paired_ratio([1.0], [1.0, 2.0])


def test_time_paired_rotates_the_order_warms_up_and_times_only_the_second_call():
    now = [0.0]
    calls = []
    cost = {"a": 1.0, "b": 10.0, "c": 100.0}

    def make(name):
        def fn():
            calls.append(name)
            now[0] += cost[name]

        return fn

    times = bench.time_paired({n: make(n) for n in cost}, reps=3, warmup=2, clock=lambda: now[0])
    assert times == {"a": [1.0] * 3, "b": [10.0] * 3, "c": [100.0] * 3}
    warm, rounds = calls[:6], calls[6:]
    assert warm == ["a", "a", "b", "b", "c", "c"]
    # each round: the rotated order, every callable called twice in a row (untimed, then timed)
    assert rounds == ["a", "a", "b", "b", "c", "c", "b", "b", "c", "c", "a", "a", "c", "c", "a", "a", "b", "b"]
    calls.clear()
    bench.time_paired({n: make(n) for n in cost}, reps=1, warmup=0, untimed_before=False, clock=lambda: now[0])
    assert calls == ["a", "b", "c"]
    with pytest.raises(ValueError):
        bench.time_paired({}, reps=3)


def test_headline_is_best_pruned_against_best_dense():
    times = {
        "dense eager": [10.0, 10.0, 10.0],
        "dense onnxruntime": [5.0, 5.5, 5.0],
        "pruned eager": [4.0, 4.0, 4.0],
        "pruned onnxruntime": [2.5, 2.5, 2.6],
    }
    h = bench.headline(times, ["dense eager", "dense onnxruntime"], ["pruned eager", "pruned onnxruntime"])
    assert (h.best_dense, h.best_pruned) == ("dense onnxruntime", "pruned onnxruntime")
    assert h.speedup == pytest.approx(5.0 / 2.5)  # not 10 / 2.5: the dense baseline is its best runtime
    assert h.paired.median == pytest.approx(2.0)
    # per-round ratios 2.0, 2.2, 5/2.6: quartiles (5/2.6 + 2.0)/2 and (2.0 + 2.2)/2
    assert h.spread == pytest.approx(((2.0 + 2.2) / 2 - (5 / 2.6 + 2.0) / 2) / 2.0)
    with pytest.raises(ValueError):
        bench.best(times, ["nothing"])


def _paired(q1, median, q3):
    return bench.Stats(9, median, q1, q3, q1 - 0.1, q3 + 0.1)


def test_verdict_met_and_not_met_only_when_the_spread_is_narrow():
    assert bench.verdict(1.6, 1.5, _paired(1.58, 1.6, 1.62), flops_ratio=2.86).status == bench.MET
    assert bench.verdict(1.2, 1.5, _paired(1.18, 1.2, 1.22), flops_ratio=2.86).status == bench.NOT_MET
    # the ista_tf case: 1.61 on a loaded machine with a wide spread is no success
    wide = bench.verdict(1.61, 1.5, _paired(1.3, 1.61, 1.9))
    assert wide.status == bench.NOISY and "spread" in wide.text
    # narrow spread (4 %) but the target lies between the quartiles: no verdict either
    assert bench.verdict(1.52, 1.5, _paired(1.49, 1.52, 1.55)).status == bench.NOISY
    # a target exactly at q1 is met (value >= target everywhere in the middle half)
    assert bench.verdict(1.52, 1.5, _paired(1.5, 1.52, 1.54)).status == bench.MET
    assert bench.verdict(1.6, 1.5, None).status == bench.NOISY  # no spread known
    # a spread of 19 %: no verdict by default, a verdict when the caller accepts 30 %
    assert bench.verdict(1.6, 1.5, _paired(1.5, 1.6, 1.8)).status == bench.NOISY
    assert bench.verdict(1.6, 1.5, _paired(1.5, 1.6, 1.8), max_spread=0.3).status == bench.MET


def test_verdict_flags_a_speedup_above_the_flops_ratio():
    v = bench.verdict(3.2, 1.5, _paired(3.19, 3.2, 3.21), flops_ratio=2.86)
    assert v.status == bench.IMPLAUSIBLE and "2.86" in v.text
    # within 5 % above the FLOPs ratio is still judged (cache effects can give a little)
    assert bench.verdict(2.95, 1.5, _paired(2.94, 2.95, 2.96), flops_ratio=2.86).status == bench.MET
    with pytest.raises(ValueError):
        bench.verdict(float("nan"), 1.5, None)


def test_table_shows_medians_images_per_second_spread_and_load():
    times = {"dense": [0.1, 0.1, 0.12, 0.1], "pruned": [0.05, 0.05, 0.05, 0.06]}
    text = bench.format_table(times, 128, reference="dense", title="batch 128", load={"load": (3.1, 2, 1), "cpus": 2})
    lines = text.splitlines()
    assert lines[0] == "batch 128"
    assert "load 3.1 / 2.0 / 1.0" in lines[1] and "on 2 CPUs" in lines[1] and "noisy" in lines[1]
    dense = next(line for line in lines if line.strip().startswith("dense"))
    assert "100.00" in dense and "1280.0" in dense and "1.00x" in dense  # median 0.1 s: 1280 images/s
    pruned = next(line for line in lines if line.strip().startswith("pruned"))
    assert "2560.0" in pruned and "2.00x" in pruned and "50.00-60.00" in pruned
    assert "quiet" in bench.describe_load({"load": (0.2, 0.1, 0.1), "cpus": 2})
    assert set(bench.machine_load()) == {"load", "cpus"}


def test_max_abs_diff_and_thread_env(monkeypatch):
    assert bench.max_abs_diff([[1.0, 2.0]], [[1.5, 1.0]]) == 1.0
    with pytest.raises(ValueError):
        bench.max_abs_diff([1.0, 2.0], [1.0])
    monkeypatch.setenv("OMP_NUM_THREADS", "8")
    bench.set_thread_env(1)
    import os

    assert os.environ["OMP_NUM_THREADS"] == "1"
    with pytest.raises(ValueError):
        bench.set_thread_env(0)


def test_bench_imports_no_framework():
    code = "import sys, shared.bench; print(sorted(m for m in sys.modules if m.split('.')[0] in "
    code += "('torch', 'tensorflow', 'onnxruntime', 'openvino')))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
