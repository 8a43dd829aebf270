"""`python -m shared.results check`: our run records against the papers' reported numbers.

For each reported row and metric: the matching records (same paper and row, kind `reproduction` or
`released-model`, variant compatible with the row), their aggregate (median when the paper reports a
median, else mean), the delta, the tolerance and a status:

- match: |delta| <= tolerance (the row's, else the metric's default);
- within noise: |delta| <= tolerance + noise (accuracy: 2 binomial standard errors at the test-set size
  the record measured on, plus 0.5 points of run-to-run spread; other metrics: the default band);
- mismatch: beyond that;
- not run: no matching record.

Then the consistency checks of the reported tables themselves (`checks:` in each table file): each
recomputes a number from others (a reduction from counts, a count from an architecture, a speed-up
from a reduction) and says whether the table agrees with itself.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

from shared import archs, flops
from shared.errors import MalformedError
from shared.results.reported_tables import row_index

# metric -> (default match tolerance, noise band, kind)
ACCURACY_METRICS = {"top1", "top5", "baseline_top1", "top1_after_pruning", "top1_finetuned", "top1_error"}
DEFAULT_TOLERANCE = {
    "accuracy": (0.3, 0.5),
    "reduction": (0.01, 1.0),  # percentages quoted to two decimals; a rerun lands within ~1 point
    "count": (0.0, None),  # noise band: 1 % of the value
    "other": (0.0, None),
}


def metric_kind(name: str) -> str:
    if name in ACCURACY_METRICS or name.startswith("top1") or name.startswith("top5"):
        return "accuracy"
    if name.endswith("_pct"):
        return "reduction"
    if name in ("params", "macs", "flops") or name.endswith("_params") or name.endswith("_macs"):
        return "count"
    return "other"


def binomial_se_points(p_pct: float, n: int) -> float:
    p = min(max(p_pct / 100.0, 0.0), 1.0)
    return 100.0 * math.sqrt(p * (1 - p) / n) if n > 0 else float("inf")


@dataclass
class Comparison:
    paper: str
    row: str
    metric: str
    reported: float | None
    kind: str  # record kind compared
    values: list = field(default_factory=list)
    ours: float | None = None
    delta: float | None = None
    tol: float | None = None
    noise: float | None = None
    status: str = "not run"
    note: str = ""


def _variant_conflict(row_variant: dict, rec_variant: dict) -> str | None:
    for k, v in row_variant.items():
        if k in rec_variant and str(rec_variant[k]) != str(v):
            return f"{k}={rec_variant[k]} (row: {v})"
    return None


def compare(tables: dict[str, dict], records: list[tuple[object, dict]]) -> tuple[list[Comparison], list[str]]:
    """Compare records with every reported row. Returns (comparisons, notes about unmatched records)."""
    out: list[Comparison] = []
    notes: list[str] = []
    by_row: dict[tuple[str, str], list[dict]] = {}
    for path, rec in records:
        if rec["kind"] == "smoke" or rec["row"] is None:  # smoke runs and runs of no reported row
            continue
        table = tables.get(rec["paper"])
        if table is None or rec["row"] not in row_index(table):
            notes.append(f"{path}: no reported row {rec['paper']}/{rec['row']} to compare with")
            continue
        by_row.setdefault((rec["paper"], rec["row"]), []).append(rec)

    for paper, table in tables.items():
        for row in table["rows"]:
            recs = by_row.get((paper, row["key"]), [])
            kinds = sorted({r["kind"] for r in recs}) or ["-"]
            for metric, reported in row["metrics"].items():
                for kind in kinds:
                    out.append(_compare_metric(paper, row, metric, reported, kind, recs))
    return out, notes


def _compare_metric(paper, row, metric, reported, kind, recs) -> Comparison:
    c = Comparison(paper, row["key"], metric, reported, kind)
    usable = []
    for r in recs:
        if r["kind"] != kind or metric not in r["metrics"]:
            continue
        conflict = _variant_conflict(row.get("variant") or {}, r["variant"])
        if conflict:
            c.note = f"record {r['run_id']} skipped: variant {conflict}"
            continue
        if row.get("convention") and r.get("convention") and metric_kind(metric) in ("reduction", "count"):
            if r["convention"] != row["convention"]:
                c.note = f"record {r['run_id']} skipped: convention {r['convention']} (row: {row['convention']})"
                continue
        usable.append(r)
    if not usable:
        return c
    values = [float(r["metrics"][metric]) for r in usable]
    c.values = values
    c.ours = statistics.median(values) if "median" in row["statistic"] else statistics.fmean(values)
    if reported is None:
        c.status = "no paper value"
        c.note = row.get("unavailable", {}).get(metric, "")
        return c
    mkind = metric_kind(metric)
    default_tol, default_noise = DEFAULT_TOLERANCE[mkind]
    c.tol = float(row.get("tolerance", {}).get(metric, default_tol))
    if mkind == "accuracy":
        n_test = min((r["data"].get("n") or 0) for r in usable)
        c.noise = 2 * binomial_se_points(reported, n_test) + default_noise if n_test else default_noise
        c.note = c.note or f"test n={n_test}"
    elif default_noise is None:
        c.noise = 0.01 * abs(reported)
    else:
        c.noise = default_noise
    c.delta = c.ours - reported
    if abs(c.delta) <= c.tol + 1e-9:
        c.status = "match"
    elif abs(c.delta) <= c.tol + c.noise + 1e-9:
        c.status = "within noise"
    else:
        c.status = "mismatch"
    if metric in row.get("uncertain", []):
        c.note = (c.note + "; " if c.note else "") + "paper value uncertain"
    return c


# ----------------------------------------------------------------------------------------------------
# Consistency checks of the reported tables
# ----------------------------------------------------------------------------------------------------


@dataclass
class CheckResult:
    paper: str
    name: str
    reported: float
    recomputed: float
    tol: float
    consistent: bool
    expected: str
    detail: str

    @property
    def status(self) -> str:
        ok = self.consistent == (self.expected == "consistent")
        if self.consistent:
            return "consistent" if ok else "UNEXPECTEDLY consistent"
        return "inconsistent (known)" if ok else "INCONSISTENT"

    @property
    def failed(self) -> bool:
        return self.consistent != (self.expected == "consistent")


def _resolve(value, table: dict, where: str) -> tuple[float, str]:
    """A number, {row, metric} of this table, or {arch, convention, quantity} counted by shared.flops."""
    if isinstance(value, bool):
        raise MalformedError(f"{where}: expected a number or a reference, got {value!r}")
    if isinstance(value, (int, float)):
        return float(value), f"{value:,}" if isinstance(value, int) else f"{value}"
    if isinstance(value, dict) and "row" in value:
        rows = row_index(table)
        row = rows.get(value["row"])
        if row is None or value.get("metric") not in row["metrics"] or row["metrics"][value["metric"]] is None:
            raise MalformedError(f"{where}: no value {value.get('metric')!r} in row {value['row']!r}")
        return float(row["metrics"][value["metric"]]), f"{value['row']}.{value['metric']}"
    if isinstance(value, dict) and "arch" in value:
        quantity = value.get("quantity")
        if quantity not in ("macs", "params"):
            raise MalformedError(f"{where}: quantity must be 'macs' or 'params', got {quantity!r}")
        counts = flops.count(archs.build(value["arch"]), value.get("convention", "conv-fc"))
        n = getattr(counts, quantity)
        return float(n), f"{quantity}({value['arch']}, {counts.convention})={n:,}"
    raise MalformedError(f"{where}: expected a number, {{row, metric}} or {{arch, convention, quantity}}")


def run_checks(paper: str, table: dict) -> list[CheckResult]:
    results = []
    for i, chk in enumerate(table.get("checks", [])):
        where = f"{paper}.yaml: checks[{i}] ({chk['name']})"

        def get(key, _chk=chk, _where=where):
            if key not in _chk:
                raise MalformedError(f"{_where}: field '{key}' missing")
            return _resolve(_chk[key], table, f"{_where}.{key}")

        kind = chk["kind"]
        reported, rep_txt = get("reported")
        if kind in ("count", "equal"):
            value, txt = get("value")
            recomputed, detail = value, txt
            default_tol = 0.0
        elif kind == "reduction":
            (kept, kt), (total, tt) = get("kept"), get("total")
            recomputed, detail = 100.0 * (1 - kept / total), f"100 (1 - {kt} / {tt})"
            default_tol = 0.005
        elif kind == "speedup":
            red, rt = get("reduction_pct")
            recomputed, detail = 1.0 / (1 - red / 100.0), f"1 / (1 - {rt}%)"
            default_tol = 0.01
        elif kind == "difference":
            (a, at), (b, bt) = get("a"), get("b")
            recomputed, detail = a - b, f"{at} - {bt}"
            default_tol = 0.005
        elif kind == "ratio":
            (a, at), (b, bt) = get("a"), get("b")
            recomputed, detail = a / b, f"{at} / {bt}"
            default_tol = 0.005
        else:  # validated already
            raise MalformedError(f"{where}: unknown kind {kind!r}")
        tol = float(chk.get("tol", default_tol))
        consistent = abs(recomputed - reported) <= tol + 1e-9
        results.append(
            CheckResult(
                paper,
                chk["name"],
                reported,
                recomputed,
                tol,
                consistent,
                chk.get("expect", "consistent"),
                f"{rep_txt} vs {detail}",
            )
        )
    return results


# ----------------------------------------------------------------------------------------------------
# Printing
# ----------------------------------------------------------------------------------------------------


def _fmt(x, digits=2):
    if x is None:
        return "-"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.{digits}f}"


def format_report(
    comparisons: list[Comparison],
    checks: list[CheckResult],
    notes: list[str],
    n_smoke: int,
    show_not_run: bool = True,
    show_consistent: bool = True,
) -> str:
    lines = []
    header = (
        f"{'paper':5} {'row':34} {'metric':22} {'record':14} {'paper':>9} {'ours':>9} {'n':>3} "
        f"{'delta':>7} {'tol':>5} {'noise':>5}  status"
    )
    lines += ["== Reported rows vs run records ==", header, "-" * len(header)]
    for c in comparisons:
        if c.status == "not run" and not show_not_run:
            continue
        lines.append(
            f"{c.paper:5} {c.row[:34]:34} {c.metric[:22]:22} {c.kind[:14]:14} {_fmt(c.reported):>9} "
            f"{_fmt(c.ours):>9} {len(c.values) or '-':>3} {_fmt(c.delta):>7} {_fmt(c.tol):>5} "
            f"{_fmt(c.noise):>5}  {c.status}" + (f"  [{c.note}]" if c.note else "")
        )
    counts: dict[str, int] = {}
    for c in comparisons:
        counts[c.status] = counts.get(c.status, 0) + 1
    lines.append(
        "summary: "
        + ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
        + f"; {n_smoke} smoke records not compared"
    )
    lines += ["", "== Consistency of the reported tables =="]
    for r in checks:
        if r.consistent and not r.failed and not show_consistent:
            continue
        lines.append(
            f"{r.paper:5} {r.status:22} {r.name}: reported {_fmt(r.reported, 4)}, recomputed "
            f"{_fmt(r.recomputed, 4)} (tol {r.tol:g}) = {r.detail}"
        )
    n_bad = sum(r.failed for r in checks)
    lines.append(
        f"summary: {len(checks)} checks, {sum(r.consistent for r in checks)} consistent, "
        f"{sum(not r.consistent for r in checks)} inconsistent, {n_bad} not as expected"
    )
    for n in notes:
        lines.append(f"note: {n}")
    return "\n".join(lines)


def format_records(records: list[dict]) -> str:
    """One line per run record: paper, kind, row, data, seed, the main metrics."""
    keys = ("top1", "flops_reduction_pct", "params_reduction_pct", "params", "test_loss")
    header = f"{'paper':5} {'kind':14} {'row':34} {'data':22} {'seed':>4}  metrics"
    lines = [header, "-" * len(header)]
    for r in records:
        data = f"{r['data']['name']} (n={r['data'].get('n')})"
        shown = {k: r["metrics"][k] for k in keys if k in r["metrics"]}
        ms = ", ".join(f"{k}={_fmt(v)}" for k, v in shown.items())
        stage = r["variant"].get("stage")
        row = (r["row"] or "-") + (f" [{stage}]" if stage else "")
        lines.append(f"{r['paper']:5} {r['kind'][:14]:14} {row[:34]:34} {data[:22]:22} {str(r['seed']):>4}  {ms}")
    return "\n".join(lines)
