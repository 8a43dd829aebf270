"""Paired, warm timing of several ways to run a model, with the spread and the machine load beside it.

Framework-free (standard library and numpy; onnxruntime and OpenVINO only inside the runners that need
them), so every subproject's `bench` uses the same statistics and the same verdict rules:

- `time_paired(fns, reps, warmup)`: each callable (no arguments, the input bound inside) is called
  `warmup` times, then `reps` rounds each call every callable once, in an order that rotates from
  round to round, so a load drift on a shared machine hits every contender alike. Each timed call
  follows an untimed one (`untimed_before`), so what is timed is the steady, warm state.
- `Stats` / `summarize(samples)`: median, quartiles, relative IQR (IQR / median), min and max.
- `paired_ratio(a, b)`: the per-round ratios a_r / b_r of two contenders timed in the same rounds,
  summarised: their spread says how far a ratio can be trusted.
- `headline(timings, dense, pruned)`: best pruned vs best dense (the fastest runtime of each) as a
  speed-up = t(best dense) / t(best pruned), with the spread of the paired per-round ratio.
- `verdict(speedup, target, spread, flops_ratio)`: 'met' / 'not met' only when the spread is narrow
  (and the interquartile range of the ratio lies on one side of the target), 'noisy (no verdict)'
  otherwise; a speed-up above the FLOPs ratio is flagged 'implausible'.
- `machine_load()`, `format_table(...)`: what is printed with every table (1/5/15-minute load
  averages against the CPU count: a load near or above the cores means the numbers are noisy).
- `set_thread_env(n)`: OMP/MKL thread variables, to be set before a framework is imported;
  `onnxruntime_runner` / `openvino_runner`: numpy batch -> numpy logits callables for an ONNX file,
  with a fixed thread count (shared by `shared.torch_export` and `shared.tf_export`).

Wall-clock timings on a machine that other jobs share are noisy: the tables say so through the spread
and the load, and no test asserts a timing.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# A ratio is given a verdict only when the relative IQR of the paired per-round ratios is at most this.
MAX_SPREAD = 0.10
# A speed-up above the FLOPs ratio by more than this fraction is implausible (the pruned model would run
# faster than its arithmetic allows: a timing artefact, or a dense baseline that is not the best).
IMPLAUSIBLE_MARGIN = 0.05

MET, NOT_MET, NOISY, IMPLAUSIBLE = "met", "not met", "noisy (no verdict)", "implausible"


# ----------------------------------------------------------------------------------------------------
# Statistics
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stats:
    """Summary of repeated measurements (seconds per call, or ratios)."""

    n: int
    median: float
    q1: float
    q3: float
    min: float
    max: float

    @property
    def iqr(self) -> float:
        return self.q3 - self.q1

    @property
    def spread(self) -> float:
        """Relative interquartile range, IQR / median (0.05 = the middle half within 5 % of the median)."""
        return self.iqr / self.median if self.median else math.inf

    @property
    def range_spread(self) -> float:
        """(max - min) / median."""
        return (self.max - self.min) / self.median if self.median else math.inf


def summarize(samples: Sequence[float]) -> Stats:
    """Median, quartiles (linear interpolation, numpy's default) and extremes of `samples`.

    Raises ValueError for an empty or non-finite sample: a timing that is NaN is a bug upstream."""
    a = np.asarray(list(samples), dtype=np.float64)
    if a.size == 0:
        raise ValueError("no samples to summarise")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"non-finite samples: {a.tolist()}")
    q1, med, q3 = np.percentile(a, [25, 50, 75])
    return Stats(int(a.size), float(med), float(q1), float(q3), float(a.min()), float(a.max()))


def paired_ratio(numerator: Sequence[float], denominator: Sequence[float]) -> Stats:
    """Summary of the per-round ratios numerator[r] / denominator[r] of two contenders timed in the same
    rounds (e.g. t_dense / t_pruned = the speed-up in round r). Pairing cancels a load change that hits
    both contenders of one round, so this spread is the honest uncertainty of their ratio."""
    if len(numerator) != len(denominator):
        raise ValueError(f"paired samples differ in length: {len(numerator)} vs {len(denominator)}")
    return summarize([a / b for a, b in zip(numerator, denominator)])


# ----------------------------------------------------------------------------------------------------
# Timing
# ----------------------------------------------------------------------------------------------------


def rotation(names: Sequence[str], round_index: int) -> list[str]:
    """The order of round `round_index`: the names rotated by it (round 0 in the given order)."""
    names = list(names)
    k = round_index % len(names) if names else 0
    return names[k:] + names[:k]


def time_paired(
    fns: Mapping[str, Callable[[], object]],
    *,
    reps: int = 9,
    warmup: int = 2,
    untimed_before: bool = True,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, list[float]]:
    """Seconds per call of each zero-argument callable, `reps` samples each, interleaved round-robin.

    The callables must block until their result exists (return numpy arrays, or synchronise a GPU).
    Warm-up calls (compilation, first-touch allocations) are not timed; with `untimed_before`, each
    timed call directly follows an untimed call of the same callable, so caches hold its weights."""
    if reps < 1 or warmup < 0:
        raise ValueError(f"reps must be >= 1 and warmup >= 0, got reps={reps}, warmup={warmup}")
    if not fns:
        raise ValueError("nothing to time")
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for r in range(reps):
        for name in rotation(list(fns), r):
            fn = fns[name]
            if untimed_before:
                fn()
            t0 = clock()
            fn()
            times[name].append(clock() - t0)
    return times


# ----------------------------------------------------------------------------------------------------
# Headline ratio and verdict
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Headline:
    """Best pruned vs best dense: speed-up = median t(best dense) / median t(best pruned)."""

    best_dense: str
    best_pruned: str
    speedup: float
    paired: Stats  # per-round t(best dense) / t(best pruned)

    @property
    def spread(self) -> float:
        return self.paired.spread


def best(times: Mapping[str, Sequence[float]], names: Sequence[str]) -> str:
    """The name among `names` with the smallest median time."""
    present = [n for n in names if n in times]
    if not present:
        raise ValueError(f"none of {list(names)} was timed (timed: {list(times)})")
    return min(present, key=lambda n: summarize(times[n]).median)


def headline(times: Mapping[str, Sequence[float]], dense: Sequence[str], pruned: Sequence[str]) -> Headline:
    """The headline of a bench: the fastest dense runtime against the fastest pruned one."""
    d, p = best(times, dense), best(times, pruned)
    speedup = summarize(times[d]).median / summarize(times[p]).median
    return Headline(d, p, speedup, paired_ratio(times[d], times[p]))


@dataclass(frozen=True)
class Verdict:
    status: str  # MET, NOT_MET, NOISY or IMPLAUSIBLE
    text: str

    def __str__(self) -> str:
        return self.text


def verdict(
    value: float,
    target: float,
    paired: Stats | None = None,
    *,
    flops_ratio: float | None = None,
    max_spread: float = MAX_SPREAD,
) -> Verdict:
    """Judge a measured speed-up `value` against `target` (met when value >= target).

    - implausible: `flops_ratio` given and value > flops_ratio * (1 + IMPLAUSIBLE_MARGIN): faster than
      the arithmetic removed allows (checked first: no spread makes such a number a success);
    - noisy (no verdict): no spread known, the relative IQR of the paired ratios above `max_spread`,
      or the target inside their interquartile range [q1, q3];
    - met / not met otherwise."""
    if not (math.isfinite(value) and math.isfinite(target)):
        raise ValueError(f"non-finite speed-up {value} or target {target}")
    head = f"{value:.2f}x vs target {target:.2f}x"
    spread = (
        "spread unknown"
        if paired is None
        else f"spread {100 * paired.spread:.1f}% (IQR {paired.q1:.2f}-{paired.q3:.2f}x)"
    )
    if flops_ratio is not None and value > flops_ratio * (1 + IMPLAUSIBLE_MARGIN):
        return Verdict(
            IMPLAUSIBLE,
            f"{head}: implausible, above the FLOPs ratio {flops_ratio:.2f}x (a timing artefact, a weak dense "
            f"baseline, or weights that fit in cache only when pruned), {spread}",
        )
    if paired is None:
        return Verdict(NOISY, f"{head}: {NOISY}, spread unknown")
    if paired.spread > max_spread:
        return Verdict(NOISY, f"{head}: {NOISY}, {spread} above {100 * max_spread:.0f}%")
    if paired.q1 < target <= paired.q3:
        return Verdict(NOISY, f"{head}: {NOISY}, target inside the {spread}")
    return Verdict(MET if value >= target else NOT_MET, f"{head}: {MET if value >= target else NOT_MET}, {spread}")


# ----------------------------------------------------------------------------------------------------
# Machine state and tables
# ----------------------------------------------------------------------------------------------------


def machine_load() -> dict:
    """{'load': (1, 5, 15-minute load averages), 'cpus': CPU count}; load None where the OS has none."""
    try:
        load = tuple(round(x, 2) for x in os.getloadavg())
    except (AttributeError, OSError):
        load = None
    return {"load": load, "cpus": os.cpu_count()}


def describe_load(load: Mapping | None = None) -> str:
    """e.g. 'load 1.9 / 1.5 / 1.2 (1/5/15 min) on 2 CPUs: busy, timings noisy'."""
    load = dict(load or machine_load())
    cpus = load.get("cpus") or 1
    if load.get("load") is None:
        return f"load unknown on {cpus} CPUs"
    one = load["load"][0]
    state = "busy, timings noisy" if one >= 0.5 * cpus else "quiet"
    return f"load {' / '.join(f'{x:.1f}' for x in load['load'])} (1/5/15 min) on {cpus} CPUs: {state}"


def set_thread_env(threads: int) -> None:
    """OMP / MKL / OpenBLAS thread counts, for the process and its children. Effective only before the
    framework that reads them is imported; the frameworks' own settings (torch.set_num_threads,
    tf.config.threading, onnxruntime / OpenVINO options) are set by the export helpers' `threads`."""
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)


def format_table(
    times: Mapping[str, Sequence[float]],
    batch: int,
    *,
    reference: str | None = None,
    title: str = "",
    load: Mapping | None = None,
) -> str:
    """A table: name, median ms per batch, images/s, spread (IQR / median), min-max ms, and the speed-up
    against `reference` (a paired per-round ratio), with the machine load in its header."""
    lines = []
    if title:
        lines.append(title)
    lines.append(f"  {describe_load(load)}")
    ref = f"vs {reference}" if reference else ""
    lines.append(f"  {'runtime':34s} {'ms/batch':>9s} {'images/s':>9s} {'spread':>7s} {'min-max ms':>15s} {ref:>12s}")
    for name, samples in times.items():
        s = summarize(samples)
        row = (
            f"  {name:34s} {1e3 * s.median:9.2f} {batch / s.median:9.1f} {100 * s.spread:6.1f}% "
            f"{f'{1e3 * s.min:.2f}-{1e3 * s.max:.2f}':>15s}"
        )
        if reference and reference in times:
            row += f" {paired_ratio(times[reference], samples).median:11.2f}x"
        lines.append(row)
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------
# ONNX runtimes (numpy in, numpy out)
# ----------------------------------------------------------------------------------------------------


class RuntimeUnavailable(RuntimeError):
    """A runtime's package is not installed (or cannot run this model); the message says which."""


def onnxruntime_runner(path: str | os.PathLike, threads: int = 1) -> Callable[[np.ndarray], np.ndarray]:
    """An onnxruntime CPU session for the ONNX file `path` (one input, first output), `threads`
    intra-op threads, one inter-op thread, all graph optimisations."""
    try:
        import onnxruntime as ort
    except ImportError as err:
        raise RuntimeUnavailable(f"onnxruntime is not installed ({err})") from err
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(threads)
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(os.fspath(path), opts, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def run(x) -> np.ndarray:
        return session.run(None, {name: np.ascontiguousarray(x, dtype=np.float32)})[0]

    return run


def openvino_runner(path: str | os.PathLike, threads: int = 1) -> Callable[[np.ndarray], np.ndarray]:
    """An OpenVINO model compiled for the CPU from the ONNX file `path` (latency hint, `threads`
    inference threads, fp32 precision: no silent bf16 on CPUs that have it)."""
    try:
        import openvino as ov
    except ImportError as err:
        raise RuntimeUnavailable(f"openvino is not installed ({err})") from err
    core = ov.Core()
    model = core.read_model(os.fspath(Path(path)))
    compiled = core.compile_model(
        model,
        "CPU",
        {"INFERENCE_NUM_THREADS": int(threads), "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"},
    )
    request = compiled.create_infer_request()

    def run(x) -> np.ndarray:
        request.infer({0: np.ascontiguousarray(x, dtype=np.float32)})
        return np.array(request.get_output_tensor(0).data, copy=True)

    return run


def max_abs_diff(a, b) -> float:
    """max |a - b| over two arrays of the same shape (ValueError when the shapes differ)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    return float(np.max(np.abs(a - b))) if a.size else 0.0
