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
import shutil
import statistics
import textwrap
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


def is_own_row(paper: str, row: dict, table: dict) -> bool:
    """Whether a reported row is the paper's own result (its method, an ablation of it, or its dense
    baseline) rather than another method's number quoted for comparison. A table may list its own
    method names under `own_methods`; otherwise a row's `variant.method` names the paper's method when it
    contains the paper's short name (EKG, EKG-search, DCP-Adapt, Random DCP), and a row without a
    method, or with method 'dense', is the paper's own."""
    method = (row.get("variant") or {}).get("method")
    if method is None or str(method).lower() == "dense":
        return True
    own = table.get("own_methods")
    if own is not None:
        return str(method) in own
    return paper.lower() in str(method).lower()


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
    n_test: int | None = None  # accuracy: the smallest test set a record measured on

    @property
    def skipped(self) -> bool:
        """A record of this row was left out (other variant or convention): worth showing."""
        return " skipped: " in self.note


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
        c.n_test = n_test or None
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


STATUS_ORDER = ("match", "within noise", "mismatch", "no paper value", "not run")

LEGEND = (
    "paper = the number the paper or its README reports (source codes below); ours = the mean of the matching "
    "records (median where the paper reports a median), n of them; delta = ours - paper; tol = the match "
    "tolerance (the row's own, else 0.3 points of accuracy, 0.01 points of a reduction, 0 for counts); "
    "noise = the extra band of 'within noise' (accuracy: 2 binomial standard errors at the record's "
    "test-set size plus 0.5 points of run-to-run spread; reductions: 1 point; counts: 1 %). "
    "record = kind compared: reproduction (our training run, full data) or released-model "
    "(the authors' checkpoint, evaluated here)."
)
KNOWN_LINE = (
    "A consistency check marked 'inconsistent (known)' means that the paper's own numbers disagree with each "
    "other (e.g. a reduction that does not "
    "follow from its counts); the table file records this (expect: inconsistent), it is not a failure of ours "
    "and does not change the exit status."
)


def _width() -> int:
    return max(80, min(160, shutil.get_terminal_size((110, 24)).columns))


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(1, width - 3)] + "..."


def _wrap(text: str, width: int, indent: str = "  ") -> list[str]:
    return textwrap.wrap(text, width, initial_indent="", subsequent_indent=indent) or [""]


def paper_summaries(tables: dict[str, dict], comparisons: list[Comparison], smoke: list[dict]) -> list[dict]:
    """Per paper: rows, rows with records, counts of each status over (row, metric) pairs, smoke runs."""
    out = []
    for paper, table in tables.items():
        mine = [c for c in comparisons if c.paper == paper]
        counts = {s: sum(c.status == s for c in mine) for s in STATUS_ORDER}
        rows_run = {c.row for c in mine if c.values}
        kinds = sorted({c.kind for c in mine if c.values})
        out.append(
            {
                "paper": paper,
                "title": table["title"],
                "rows": len(table["rows"]),
                "own_rows": sum(is_own_row(paper, r, table) for r in table["rows"]),
                "rows_with_records": len(rows_run),
                "kinds": kinds,
                "counts": counts,
                "smoke": sum(r["paper"] == paper for r in smoke),
            }
        )
    return out


def summary_line(s: dict) -> str:
    c = s["counts"]
    compared = c["match"] + c["within noise"] + c["mismatch"]
    head = f"{s['paper']:5} {s['rows']:4} rows, {s['rows_with_records']:3} with records: "
    if not compared:
        body = "not run"
    else:
        body = f"{c['match']} match, {c['within noise']} within noise, {c['mismatch']} mismatch"
        body += f" ({compared} numbers, {'/'.join(s['kinds'])})"
    tail = f"; {c['not run']} numbers not run" if compared else f" ({c['not run']} numbers)"
    smoke = f"; {s['smoke']} smoke runs (not compared)" if s["smoke"] else ""
    return head + body + tail + smoke


def format_check(
    tables: dict[str, dict],
    comparisons: list[Comparison],
    checks: list[CheckResult],
    notes: list[str],
    smoke: list[dict],
    show_all: bool = False,
    brief: bool = False,
) -> str:
    """The console report of `check`: per-paper summary, rows with records (every row with show_all),
    the legend, the sources those rows cite, and the consistency checks (abbreviated to the width)."""
    width = _width()
    index = {paper: row_index(table) for paper, table in tables.items()}
    lines = ["== Summary per paper (numbers = reported (row, metric) pairs) =="]
    lines += [summary_line(s) for s in paper_summaries(tables, comparisons, smoke)]
    shown = [c for c in comparisons if show_all or c.values or c.skipped]
    if brief:
        shown = [c for c in shown if c.status == "mismatch"]
    if shown:
        rw = max(3, min(40, max(len(c.row) for c in shown)))
        mw = max(6, min(24, max(len(c.metric) for c in shown)))
        header = (
            f"{'paper':5} {'row':{rw}} {'source':16} {'metric':{mw}} {'record':14} {'paper':>9} {'ours':>9} "
            f"{'n':>3} {'delta':>7} {'tol':>5} {'noise':>5}  status"
        )
        title = "every reported row" if show_all else "rows with run records; --all for every row"
        lines += ["", f"== Reported rows vs run records ({title}) ==", header, "-" * min(len(header), width)]
        for c in shown:
            source = index[c.paper][c.row]["source"]
            kind = c.kind if c.values else "-"
            line = (
                f"{c.paper:5} {_short(c.row, rw):{rw}} {_short(source, 16):16} {_short(c.metric, mw):{mw}} "
                f"{kind[:14]:14} {_fmt(c.reported):>9} {_fmt(c.ours):>9} {len(c.values) or '-':>3} "
                f"{_fmt(c.delta):>7} {_fmt(c.tol):>5} {_fmt(c.noise):>5}  {c.status}"
            )
            room = width - len(line) - 4
            if c.note and room >= 16:  # abbreviated to the width; in full in TABLES.md
                line += f"  [{_short(c.note, room)}]"
            lines.append(line)
            if c.note and room < 16:
                lines.append(" " * 6 + f"[{_short(c.note, width - 8)}]")
        lines += [""] + _wrap(LEGEND, width)
        cited = {}
        for c in shown:
            row = index[c.paper][c.row]
            cited.setdefault((c.paper, row["source"]), tables[c.paper]["sources"][row["source"]])
        lines.append("sources:")
        for (paper, code), text in cited.items():
            lines.append("  " + _short(f"{paper}/{code}: {text}", width - 2))
    elif not brief:
        lines += ["", "no run records match a reported row (--all lists every row)"]
    lines += ["", "== Consistency of the reported tables (full text in TABLES.md) =="]
    by_paper: dict[str, list[CheckResult]] = {}
    for r in checks:
        by_paper.setdefault(r.paper, []).append(r)
    for paper, results in by_paper.items():
        n_ok = sum(r.consistent and not r.failed for r in results)
        n_known = sum(r.status == "inconsistent (known)" for r in results)
        n_bad = sum(r.failed for r in results)
        lines.append(
            f"{paper:5} {len(results)} checks: {n_ok} consistent, {n_known} inconsistent (known), "
            f"{n_bad} not as expected"
        )
    listed = [r for r in checks if show_all or r.failed or (not brief and not r.consistent)]
    for status in ("INCONSISTENT", "UNEXPECTEDLY consistent", "inconsistent (known)", "consistent"):
        group = [r for r in listed if r.status == status]
        if not group:
            continue
        lines.append(f"{status}:")
        if status == "inconsistent (known)":
            lines += _wrap("  " + KNOWN_LINE, width, "  ")
        for r in group:
            numbers = f": {_fmt(r.reported, 4)} reported, {_fmt(r.recomputed, 4)} recomputed"
            if r.failed:  # what needs attention: in full
                lines += _wrap(f"  {r.paper:5} {r.name}{numbers} (tol {r.tol:g}) = {r.detail}", width, " " * 8)
            else:
                lines.append(f"  {r.paper:5} " + _short(r.name, max(20, width - 8 - len(numbers))) + numbers)
    for n in notes:
        lines += _wrap(f"note: {n}", width, "  ")
    return "\n".join(lines)


def format_records(records: list[dict]) -> str:
    """One line per run record: paper, kind, row, data, seed, the main metrics."""
    keys = ("top1", "flops_reduction_pct", "params_reduction_pct", "params", "test_loss")
    header = f"{'paper':5} {'kind':14} {'row':44} {'data':22} {'seed':>4}  metrics"
    lines = [header, "-" * len(header)]
    for r in records:
        data = f"{r['data']['name']} (n={r['data'].get('n')})"
        shown = {k: r["metrics"][k] for k in keys if k in r["metrics"]}
        ms = ", ".join(f"{k}={_fmt(v)}" for k, v in shown.items())
        stage = r["variant"].get("stage") or r["variant"].get("version")  # a training stage or an evaluated version
        row = (r["row"] or "-") + (f" [{stage}]" if stage else "")
        seed = "-" if r["seed"] is None else r["seed"]
        lines.append(f"{r['paper']:5} {r['kind'][:14]:14} {row[:44]:44} {data[:22]:22} {seed:>4}  {ms}")
    return "\n".join(lines)
