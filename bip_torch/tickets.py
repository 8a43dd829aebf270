"""Table 1's step: the sparsest winning ticket of each method, from the curve records.

    python -m bip_torch.tickets --records DIR [--out DIR] [--metric top1]

BiP's Table 1 lists, per (dataset, architecture) column and method, the sparsest winning ticket: the
highest sparsity on the README k grid at which the method's test accuracy, averaged over the trials
(seeds), is at least the dense model's (also averaged), with the mean +- std of the 3 trials there;
'x' when no point of the grid wins. This command reads the run records that `scripts/bip/table1.sh`
writes (one per method, k and seed: the Fig. 3 curve points), finds that ticket and writes one record
per column and method, row `table1/<dataset>/<model>/<method>`, which `python -m shared.results check
--paper bip` compares with the paper:

- dense reference: the pretraining records (method `dense`) of the same dataset and architecture;
- BiP: its prune records (no retraining, as the paper reports it); HYDRA: the records of the fine-tuning
  that follows its prune stage (the prune stage alone is not HYDRA's reported accuracy); OMP / IMP:
  their fine-tuning records (IMP: one per round). Only unstructured masks (Table 1).
- records that differ in anything but k and seed (e.g. `--bip-variant paper`, `--hydra-original`) are
  separate curves, each with its own ticket;
- std is the sample standard deviation over the seeds (n - 1; 0 for one seed); the record's sparsity is
  the measured global sparsity, averaged over the seeds;
- the ticket record is `reproduction` only when every record it comes from is; a column with no
  winning point gets a record with `winning_ticket: 0` (and no accuracy), so a rerun sees it was done.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections import defaultdict
from pathlib import Path

from bip_torch.train import MODEL_NAMES
from shared.errors import UserError, main_guard
from shared.results.records import iter_records, make_record, write_record

METHODS = ("bip", "hydra", "omp", "imp")
TRAINER = {"bip": "bilevel", "hydra": "base"}
DATASET_KEYS = {"CIFAR10": "cifar10", "CIFAR100": "cifar100", "TinyImageNet": "tinyimagenet", "ImageNet": "imagenet"}
_NOT_CURVE = ("k", "imp_rounds")  # what varies along one curve


def _is_curve_point(rec: dict) -> bool:
    v = rec["variant"]
    if v.get("layer_type") != "unstructured" or v.get("method") not in METHODS:
        return False
    stage = "prune" if v["method"] == "bip" else "finetune"  # HYDRA: after its fine-tuning
    return v.get("exp_mode") == stage


def _column(rec: dict) -> tuple[str, str]:
    cfg = rec.get("config") or {}
    return str(cfg.get("dataset")), str(cfg.get("arch"))


def _latest(recs: list[dict]) -> list[dict]:
    """One record per seed (the newest, when a point was run twice)."""
    by_seed: dict = {}
    for r in sorted(recs, key=lambda r: r["created"]):
        by_seed[r["seed"]] = r
    return list(by_seed.values())


def find_tickets(records: list[dict], metric: str = "top1") -> list[dict]:
    """The ticket of every (column, curve) in the records; each a dict (see `ticket_record`)."""
    dense: dict[tuple, list[dict]] = defaultdict(list)
    curves: dict[tuple, dict[float, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        if r["paper"] != "bip" or str(r.get("row") or "").startswith("table1/") or metric not in r["metrics"]:
            continue
        if r["variant"].get("method") == "dense":
            dense[_column(r)].append(r)
        elif _is_curve_point(r):
            key = (_column(r), tuple(sorted((k, str(v)) for k, v in r["variant"].items() if k not in _NOT_CURVE)))
            curves[key][float(r["variant"]["k"])].append(r)
    out = []
    for (column, variant), points in sorted(curves.items()):
        refs = _latest(dense.get(column, []))
        if not refs:
            print(f"note: no dense (pretraining) record for {column[0]} {column[1]}: no ticket", file=sys.stderr)
            continue
        dense_acc = statistics.fmean(float(r["metrics"][metric]) for r in refs)
        rows = []
        for k, recs in points.items():
            recs = _latest(recs)
            accs = [float(r["metrics"][metric]) for r in recs]
            sparsity = statistics.fmean(float(r["metrics"]["sparsity_pct"]) for r in recs)
            rows.append({"k": k, "sparsity_pct": sparsity, "mean": statistics.fmean(accs),
                         "std": statistics.stdev(accs) if len(accs) > 1 else 0.0, "records": recs})  # fmt: skip
        rows.sort(key=lambda p: p["sparsity_pct"])
        winners = [p for p in rows if p["mean"] >= dense_acc]
        out.append({"column": column, "variant": dict(variant), "dense": dense_acc, "dense_records": refs,
                    "curve": rows, "ticket": winners[-1] if winners else None})  # fmt: skip
    return out


def ticket_record(t: dict, metric: str = "top1") -> dict:
    (dataset, arch), variant = t["column"], t["variant"]
    method = variant["method"]
    ds = DATASET_KEYS.get(dataset, "imagenet" if dataset == "ImageNetOrigin" else None)
    model = MODEL_NAMES.get(arch, arch.lower())
    row = f"table1/{ds}/{model}/{method}" if ds else None
    ticket = t["ticket"]
    used = t["dense_records"] + (ticket["records"] if ticket else [r for p in t["curve"] for r in p["records"]])
    kind = "reproduction" if all(r["kind"] == "reproduction" for r in used) else "smoke"
    metrics = {"winning_ticket": int(ticket is not None), f"dense_{metric}": t["dense"]}
    if ticket:
        metrics.update({"sparsity_pct": ticket["sparsity_pct"], "top1": ticket["mean"], "top1_std": ticket["std"]})
    # the ticket's k is a result, not a setting: it stays out of the variant (the row's k is the paper's)
    keep = {"method", "trainer", "layer_type", "bip_variant", "accelerate", "hydra", "imp_recipe"}
    rec_variant = {k: v for k, v in variant.items() if k in keep}
    if method in TRAINER:
        rec_variant.setdefault("trainer", TRAINER[method])
    curve = [{"k": p["k"], "sparsity_pct": round(p["sparsity_pct"], 3), "mean": round(p["mean"], 3),
              "std": round(p["std"], 3), "n": len(p["records"])} for p in t["curve"]]  # fmt: skip
    config = {
        "derived_from": "curve records (bip_torch.tickets)",
        "criterion": f"sparsest k with mean {metric} over seeds >= the dense mean",
        "metric": metric,
        "ticket_k": ticket["k"] if ticket else None,
        "seeds": sorted(r["seed"] for r in ticket["records"]) if ticket else [],
        "dense_seeds": sorted(r["seed"] for r in t["dense_records"]),
        "curve": curve,
        "sources": [r["run_id"] for r in used],
    }
    data = (ticket["records"][0] if ticket else t["dense_records"][0])["data"]
    return make_record("bip", row, kind, metrics=metrics, data=data, variant=rec_variant,
                       convention="weights-only", config=config, frameworks=("torch",))  # fmt: skip


@main_guard
def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bip_torch.tickets", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--records", required=True, nargs="+", help="folders holding the curve and dense run records")
    p.add_argument("--out", help="folder for the ticket records (default: the first --records folder)")
    p.add_argument("--metric", default="top1", choices=["top1", "top1_best"],
                   help="accuracy compared with the dense model: final (top1, default) or best epoch")  # fmt: skip
    args = p.parse_args(argv)
    for folder in args.records:
        if not Path(folder).is_dir():
            raise UserError(f"--records {folder} is not a folder")
    records = [r for _, r in iter_records(args.records)]
    tickets = find_tickets(records, args.metric)
    if not tickets:
        print("no curve records with a dense reference: nothing to do (run scripts/bip/table1.sh first)")
        return 0
    out = Path(args.out or args.records[0])
    print(f"{'column':28s} {'method':8s} {'ticket':>22s}  dense")
    for t in tickets:
        rec = ticket_record(t, args.metric)
        path = write_record(rec, out)
        tk = t["ticket"]
        cell = f"{tk['sparsity_pct']:.1f} %: {tk['mean']:.2f} +- {tk['std']:.2f}" if tk else "x"
        column = f"{t['column'][0]} {t['column'][1]}"
        print(f"{column:28s} {t['variant']['method']:8s} {cell:>22s}  {t['dense']:.2f}  ({rec['kind']}: {path})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
