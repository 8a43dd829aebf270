"""`python -m shared.results tables`: TABLES.md and one plot per paper, paper vs ours.

TABLES.md: a summary table, contents (papers with run records first), how to read it, then per paper:
its own rows with run records (per metric: paper, ours, delta, tolerance, noise, status), its own rows not
run yet, the other methods it compares with (the paper's numbers only), smoke runs, the consistency checks
of its table in full, and its source codes.

plots/<paper>.png: accuracy against a reduction (FLOPs where the paper reports it, else parameters or
sparsity), one panel per dataset. The paper's own method in colour, the methods it compares with in grey,
ours as red crosses with +-1 binomial standard error of the test set measured on, smoke runs (tiny or demo
data, never comparable) as hollow triangles. The counting convention is on the axis.
"""

from __future__ import annotations

from pathlib import Path

from shared import flops
from shared.paths import atomic_write_bytes, atomic_write_text, ensure_folder
from shared.results.check import (
    KNOWN_LINE,
    LEGEND,
    CheckResult,
    Comparison,
    _fmt,
    binomial_se_points,
    is_own_row,
    paper_summaries,
    summary_line,
)

KIND_LABEL = {
    "reproduction": "ours: reproduction (full data)",
    "released-model": "ours: authors' checkpoint, evaluated here",
}
X_METRICS = (
    "flops_reduction_pct",
    "params_reduction_pct",
    "sparsity_pct",
    "filter_pruning_ratio_pct",
    "flops_reduction_x",
    "params",  # a paper that reports counts only (ISTA)
)
X_LABEL = {
    "flops_reduction_pct": "FLOPs reduction (%)",
    "params_reduction_pct": "parameter reduction (%)",
    "sparsity_pct": "sparsity (% of weights removed)",
    "filter_pruning_ratio_pct": "filters pruned (%)",
    "flops_reduction_x": "FLOPs reduction (times fewer)",
    "params": "parameters (count)",
}
Y_LABEL = {
    "top1": "top-1 accuracy (%)",
    "top1_error": "top-1 error (%)",
    "top1_drop": "top-1 drop vs the method's own baseline (points)",
}


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _metrics_text(metrics: dict) -> str:
    return ", ".join(f"{k} {_fmt(v)}" for k, v in metrics.items())


def _variant_text(variant: dict | None) -> str:
    return ", ".join(f"{k}={v}" for k, v in (variant or {}).items()) or "-"


def _has_results(summary: dict) -> bool:
    return summary["rows_with_records"] > 0 or summary["smoke"] > 0


def _paper_section(paper, table, summary, comps, smoke, checks, plot_path) -> list[str]:
    rows = {r["key"]: r for r in table["rows"]}
    own = [r for r in table["rows"] if is_own_row(paper, r, table)]
    other = [r for r in table["rows"] if not is_own_row(paper, r, table)]
    with_records = {c.row for c in comps if c.values}
    line = " ".join(summary_line(summary).split())  # the console's column padding collapsed
    out = [f'<a id="{paper}"></a>', "", f"## {paper}: {table['title']}", "", line, ""]
    if plot_path is not None:
        out += [f"![{paper}: accuracy vs reduction, paper vs ours](plots/{plot_path.name})", ""]

    compared = [c for c in comps if c.values or c.skipped]  # a skipped record says why in its note
    compared.sort(key=lambda c: not is_own_row(paper, rows[c.row], table))  # own rows first, stable
    out += ["### The paper's own results, compared with our runs", ""]
    if compared:
        out += [
            "| row | source | metric | convention | paper | ours (n) | record | delta | tol | noise | status | note |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for c in compared:
            row = rows[c.row]
            conv = "-" if c.metric.startswith("top") or c.metric.endswith("loss") else row.get("convention") or "-"
            mark = "" if is_own_row(paper, row, table) else " (other method)"
            out.append(
                f"| {c.row}{mark} | {row['source']} | {c.metric} | {conv} | {_fmt(c.reported)} | "
                f"{_fmt(c.ours)} ({len(c.values)}) | {KIND_LABEL.get(c.kind, c.kind) if c.values else '-'} | "
                f"{_fmt(c.delta)} | "
                f"{_fmt(c.tol)} | {_fmt(c.noise)} | {c.status} | {_cell(c.note)} |"
            )
    else:
        out.append("No run record matches a row of this paper yet.")
    out.append("")

    not_run = [r for r in own if r["key"] not in with_records]
    if not_run:
        out += [
            f"### The paper's own results not run yet ({len(not_run)} rows)",
            "",
            "| row | source | model | variant | convention | paper's numbers |",
            "|---|---|---|---|---|---|",
        ]
        for r in not_run:
            out.append(
                f"| {r['key']} | {r['source']} | {r['model']} | {_cell(_variant_text(r.get('variant')))} | "
                f"{r.get('convention') or '-'} | {_cell(_metrics_text(r['metrics']))} |"
            )
        out.append("")

    if other:
        out += [
            f"### Other methods, as the paper reports them ({len(other)} rows; the paper's comparison columns)",
            "",
            "| row | source | method | model | convention | paper's numbers |",
            "|---|---|---|---|---|---|",
        ]
        for r in other:
            out.append(
                f"| {r['key']} | {r['source']} | {_cell(r['variant'].get('method'))} | {r['model']} | "
                f"{r.get('convention') or '-'} | {_cell(_metrics_text(r['metrics']))} |"
            )
        out.append("")

    if smoke:
        out += [
            f"### Smoke runs ({len(smoke)}; tiny or demo data, never compared with the paper)",
            "",
            "| run | row | data | metrics |",
            "|---|---|---|---|",
        ]
        for r in smoke[-20:]:
            data = f"{r['data']['name']} {r['data'].get('split') or ''} (n={r['data'].get('n')})"
            ms = _metrics_text(dict(sorted(r["metrics"].items())))
            stage = r["variant"].get("stage") or r["variant"].get("version")  # training stage or evaluated version
            row = (r["row"] or "-") + (f" [{stage}]" if stage else "")
            out.append(f"| {r['run_id']} | {row} | {data} | {_cell(ms)} |")
        if len(smoke) > 20:
            out.append(f"| ... | {len(smoke) - 20} earlier smoke runs not shown | | |")
        out.append("")

    if checks:
        out += ["### Consistency of the reported table", ""]
        out += ["| status | check | reported | recomputed | tol | how |", "|---|---|---|---|---|---|"]
        for r in checks:
            out.append(
                f"| {r.status} | {_cell(r.name)} | {_fmt(r.reported, 4)} | {_fmt(r.recomputed, 4)} | {r.tol:g} | "
                f"{_cell(r.detail)} |"
            )
        out.append("")

    cited = sorted({r["source"] for r in table["rows"]})
    out += ["### Sources", ""] + [f"- `{code}`: {table['sources'][code]}" for code in cited] + [""]
    return out


def markdown(
    tables: dict[str, dict],
    comparisons: list[Comparison],
    smoke: list[dict],
    checks: list[CheckResult] | None = None,
    plots: dict[str, Path] | None = None,
) -> str:
    checks, plots = checks or [], plots or {}
    summaries = {s["paper"]: s for s in paper_summaries(tables, comparisons, smoke)}
    order = [p for p in tables if _has_results(summaries[p])] + [p for p in tables if not _has_results(summaries[p])]
    out = [
        "# Results: reported numbers vs our runs",
        "",
        "Generated by `python -m shared.results tables` from the reported tables (`shared/results/reported/`) and",
        "the run records read. Papers with run records come first.",
        "",
        "## Summary",
        "",
        "| paper | rows (own / other methods) | rows with records | match | within noise | mismatch | "
        "numbers not run | smoke runs |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for p in order:
        s, c = summaries[p], summaries[p]["counts"]
        out.append(
            f"| [{p}](#{p}) | {s['rows']} ({s['own_rows']} / {s['rows'] - s['own_rows']}) | {s['rows_with_records']} "
            f"| {c['match']} | {c['within noise']} | {c['mismatch']} | {c['not run']} | {s['smoke']} |"
        )
    out += ["", "## Contents", ""]
    for p in order:
        s = summaries[p]
        state = f"{s['rows_with_records']} rows with records" if s["rows_with_records"] else "no records yet"
        out.append(f"- [{p}: {tables[p]['title']}](#{p}) ({state})")
    out += [
        "",
        "## How to read the tables",
        "",
        LEGEND,
        "",
        "Status: `match` when |delta| <= tol; `within noise` when |delta| <= tol + noise; `mismatch` beyond that; "
        "`not run` when no record matches the row (same paper, row, a compatible variant and convention). "
        "Smoke runs (tiny or demo data, e.g. `make demo`) are listed per paper and never compared.",
        "",
        KNOWN_LINE,
        "",
    ]
    by_paper: dict[str, list[Comparison]] = {}
    for c in comparisons:
        by_paper.setdefault(c.paper, []).append(c)
    for p in order:
        out += _paper_section(
            p,
            tables[p],
            summaries[p],
            by_paper.get(p, []),
            [r for r in smoke if r["paper"] == p],
            [r for r in checks if r.paper == p],
            plots.get(p),
        )
    return "\n".join(out)


# ----------------------------------------------------------------------------------------------------
# Plots
# ----------------------------------------------------------------------------------------------------


def _axes_metrics(rows: list[dict]) -> tuple[str, str] | None:
    """(x metric, y metric) with the most rows reporting both, or None."""
    best, best_n = None, 0
    for y in Y_LABEL:
        for x in X_METRICS:
            n = sum(r["metrics"].get(x) is not None and r["metrics"].get(y) is not None for r in rows)
            if n > best_n:
                best, best_n = (x, y), n
    return best


def _convention_text(rows: list[dict], x: str) -> str:
    names = sorted({r.get("convention") for r in rows if r["metrics"].get(x) is not None} - {None})
    if not names:
        return "counting convention not stated by the paper"
    return "; ".join(f"{n}: {flops.CONVENTIONS[n].description}" if n in flops.CONVENTIONS else n for n in names)


def _panel_data(paper, table, comparisons, smoke):
    """{dataset: {x, y, own, other, ours: {kind: [...]}, smoke: [...], rows}} for the datasets with points."""
    ours = {(c.row, c.metric, c.kind): c for c in comparisons if c.paper == paper and c.ours is not None}
    by_dataset: dict[str, list[dict]] = {}
    for row in table["rows"]:
        by_dataset.setdefault(row["dataset"], []).append(row)
    panels = {}
    for dataset, rows in by_dataset.items():
        axes = _axes_metrics(rows)
        if axes is None:
            continue
        x, y = axes
        panel = {"x": x, "y": y, "rows": rows, "own": [], "other": [], "ours": {}, "smoke": []}
        for row in rows:
            m = row["metrics"]
            if m.get(x) is not None and m.get(y) is not None:  # with the paper's std over runs, if given
                point = (m[x], m[y], row["key"], m.get(f"{y}_std"))
                panel["own" if is_own_row(paper, row, table) else "other"].append(point)
            for kind in KIND_LABEL:
                cy, cx = ours.get((row["key"], y, kind)), ours.get((row["key"], x, kind))
                if cy is not None and cx is not None:
                    se = binomial_se_points(cy.ours, cy.n_test) if cy.n_test else None
                    panel["ours"].setdefault(kind, []).append((cx.ours, cy.ours, se, cy.n_test))
        panels[dataset] = panel
    rows_dataset = {r["key"]: r["dataset"] for r in table["rows"]}
    for rec in smoke:
        if rec["paper"] != paper or not panels:
            continue
        home = rows_dataset.get(rec["row"]) or rec["data"]["name"]
        dataset = home if home in panels else ("cifar10" if "cifar10" in panels else next(iter(panels)))
        panel = panels[dataset]
        if panel["x"] in rec["metrics"] and panel["y"] in rec["metrics"]:
            panel["smoke"].append((rec["metrics"][panel["x"]], rec["metrics"][panel["y"]], rec["data"]["name"]))
    return {d: p for d, p in panels.items() if p["own"] or p["other"] or p["ours"] or p["smoke"]}


def plot(tables: dict[str, dict], comparisons: list[Comparison], out_dir: Path, smoke=()) -> dict[str, Path]:
    """One PNG per paper (a panel per dataset); returns {paper: path}."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = {}
    for paper, table in tables.items():
        panels = _panel_data(paper, table, comparisons, list(smoke))
        if not panels:
            continue
        ncols = min(2, len(panels))
        nrows = -(-len(panels) // ncols)
        fig, axes = plt.subplots(nrows, ncols, figsize=(6.4 * ncols, 5.2 * nrows), squeeze=False)
        for ax in axes.flat[len(panels) :]:
            ax.set_visible(False)
        for ax, (dataset, p) in zip(axes.flat, panels.items()):
            if p["other"]:
                ax.scatter(
                    [q[0] for q in p["other"]],
                    [q[1] for q in p["other"]],
                    s=14,
                    color="0.65",
                    label=f"other methods, as reported in the paper ({len(p['other'])})",
                    zorder=1,
                )
            if p["own"]:
                ax.scatter(
                    [q[0] for q in p["own"]],
                    [q[1] for q in p["own"]],
                    s=42,
                    facecolors="none",
                    edgecolors="C0",
                    linewidths=1.5,
                    label=f"{paper.upper()} as reported ({len(p['own'])})",
                    zorder=2,
                )
                std = [q for q in p["own"] if q[3]]
                if std:
                    ax.errorbar(
                        [q[0] for q in std],
                        [q[1] for q in std],
                        yerr=[q[3] for q in std],
                        fmt="none",
                        ecolor="C0",
                        elinewidth=0.8,
                        capsize=2,
                        label="+-1 std over the paper's runs",
                        zorder=2,
                    )
                if len(p["own"]) <= 8:  # labels only while they stay readable
                    for xv, yv, key, _ in p["own"]:
                        short = "/".join(part for part in key.split("/") if part != dataset)[:24]
                        ax.annotate(short, (xv, yv), fontsize=6, color="C0", xytext=(4, 4), textcoords="offset points")
            for kind, pts in p["ours"].items():
                n = sorted({q[3] for q in pts if q[3]})
                bars = [q[2] if q[2] is not None else 0.0 for q in pts]
                size = f", test n={'/'.join(map(str, n))}" if n else ""
                ax.errorbar(
                    [q[0] for q in pts],
                    [q[1] for q in pts],
                    yerr=bars if any(bars) else None,
                    fmt="x",
                    color="C3" if kind == "reproduction" else "C1",
                    markersize=8,
                    capsize=3,
                    label=f"{KIND_LABEL[kind]} (+-1 s.e.{size})",
                    zorder=3,
                )
            if p["smoke"]:
                data = ", ".join(sorted({q[2] for q in p["smoke"]}))
                ax.scatter(
                    [q[0] for q in p["smoke"]],
                    [q[1] for q in p["smoke"]],
                    marker="^",
                    facecolors="none",
                    edgecolors="C2",
                    s=46,
                    label=f"smoke runs on demo data ({data}; not comparable)",
                    zorder=3,
                )
            ax.set_xlabel(X_LABEL[p["x"]] + "\n" + _wrap_label(_convention_text(p["rows"], p["x"])), fontsize=8)
            ax.set_ylabel(Y_LABEL[p["y"]])
            ax.set_title(f"{paper}: {dataset}")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7, loc="best")
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, dpi=110, format="png")
        plt.close(fig)
        path = out_dir / "plots" / f"{paper}.png"
        atomic_write_bytes(path, buf.getvalue())
        written[paper] = path
    return written


def _wrap_label(text: str, width: int = 70) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width)[:3])


def write_tables(tables, comparisons, smoke, out_dir: str | Path, checks=None) -> list[Path]:
    out_dir = ensure_folder(Path(out_dir), "output")
    plots = plot(tables, comparisons, out_dir, smoke)
    md = out_dir / "TABLES.md"
    atomic_write_text(md, markdown(tables, comparisons, smoke, checks, plots) + "\n")
    return [md, *plots.values()]
