"""The two file formats of the results layer, and their validation.

1. Run records (JSON, one per run), written by every subproject through `shared.results.records`:

    schema_version  1
    paper           "dsp" | "ista" | "ekg" | "dcp" | "bip"
    row             key of the reported row this run reproduces (see the paper's table file), or null
    kind            "reproduction" (meant to match the paper) | "released-model" (the authors' checkpoint,
                    measured here) | "smoke" (tiny run; never compared with the paper)
    variant         {name: value}: which form of the method ran (e.g. regularizer scale, fold on/off)
    convention      counting convention of the FLOPs/params metrics (a `shared.flops` name) or null
    seed            int or null
    metrics         {name: number}: top1, flops_reduction_pct, params_reduction_pct, params, macs, ...
    data            {name, split, n, source, sha256_16}: what the metrics were measured on
    config, code, env, timings, created, run_id, run_dir: provenance

2. Reported tables (YAML, one per paper, `shared/results/reported/<paper>.yaml`): every number the
   paper or its README reports, with its source, dataset, model, metric, convention and variant, plus
   consistency checks of the table itself. See `dsp.yaml` for the layout. Optional `own_methods`: the
   `variant.method` names that are the paper's own (default: names containing the paper's short name,
   and 'dense'); every other method's rows are the paper's comparison columns, shown apart.

A malformed file raises MalformedError naming the file and the field. Numbers must be finite and in
the range their name implies (`metric_range`): accuracies and other percentages of a whole in [0, 100],
reductions in [-100, 100] (negative: the model grew), drops in [-100, 100], counts, times, losses and
ratios at least 0; tolerances at least 0. A `reproduction` record must be measured on the full split of
a known dataset (`FULL_SIZE`): a run on a subset is a smoke run, never compared with the paper.
"""

from __future__ import annotations

import math
from typing import Any

from shared.errors import MalformedError
from shared.flops import CONVENTIONS

SCHEMA_VERSION = 1
PAPERS = ("ekg", "dsp", "dcp", "ista", "bip")
RECORD_KINDS = ("reproduction", "released-model", "smoke")
CHECK_KINDS = ("count", "reduction", "speedup", "difference", "ratio", "equal")

_NUMBER = (int, float)

# Images in the full split of each dataset the papers report on. A `reproduction` record measured on
# fewer (e.g. the 932-image CIFAR-10 test subset) is refused: compare such runs as `smoke`, or as
# `released-model` for the authors' checkpoints evaluated here.
FULL_SIZE = {
    ("cifar10", "train"): 50_000,
    ("cifar10", "test"): 10_000,
    ("cifar100", "train"): 50_000,
    ("cifar100", "test"): 10_000,
    ("imagenet", "train"): 1_281_167,
    ("imagenet", "val"): 50_000,
    ("tinyimagenet", "train"): 100_000,
    ("tinyimagenet", "val"): 5_000,  # BiP's 25/25 split of the official val set
    ("tinyimagenet", "test"): 5_000,
    ("tinyimagenet", "val-all"): 10_000,
}

_NON_NEGATIVE_SUFFIXES = (
    "_x", "_s", "_ms", "_seconds", "_minutes", "_hours", "_kb", "loss", "_std", "_per_sec", "_number",
)  # fmt: skip
_COUNTS = ("params", "macs", "flops", "channels_removed")


def metric_range(name: str) -> tuple[float, float] | None:
    """The values a metric of this name can take, or None when its name implies no range.

    Accuracy-like (top1, top5, *_accuracy, miou*, *_error*) and other percentages (*_pct) of a whole:
    [0, 100]; reductions (*_reduction*_pct) and drops (*_drop*, *_increase): [-100, 100]; counts,
    times, losses, standard deviations and ratios (*_x): [0, inf); correlations (corr_*): [-1, 1].
    """
    inf = float("inf")
    if name.startswith("corr_"):  # a correlation coefficient
        return (-1.0, 1.0)
    if "_drop" in name or name.endswith("_increase"):
        return (-100.0, 100.0)
    if name.endswith("_pct"):
        return (-100.0, 100.0) if "reduction" in name else (0.0, 100.0)
    if name.endswith("_std"):
        return (0.0, 100.0) if name.startswith(("top1", "top5")) else (0.0, inf)
    if name.startswith(("top1", "top5", "miou", "base_miou")) or "accuracy" in name or "_error" in name:
        return (0.0, 100.0)
    if name in _COUNTS or name.endswith(tuple(f"_{c}" for c in _COUNTS)) or name.startswith("n_"):
        return (0.0, inf)
    if name.endswith(_NON_NEGATIVE_SUFFIXES):
        return (0.0, inf)
    return None


class _Validator:
    """Collects the file name and field path for error messages."""

    def __init__(self, source: str):
        self.source = source

    def fail(self, field: str, message: str):
        raise MalformedError(f"{self.source}: field '{field}': {message}")

    def require(self, obj: dict, key: str, types, where: str = "", nullable: bool = False) -> Any:
        field = f"{where}{key}"
        if not isinstance(obj, dict):
            self.fail(where.rstrip(".") or "<top>", f"expected a mapping, got {type(obj).__name__}")
        if key not in obj:
            self.fail(field, "missing")
        return self.check_type(obj[key], types, field, nullable)

    def optional(self, obj: dict, key: str, types, where: str = "", default=None, nullable=True) -> Any:
        if key not in obj or obj[key] is None:
            return default
        return self.check_type(obj[key], types, f"{where}{key}", nullable)

    def check_type(self, value, types, field: str, nullable: bool = False):
        if value is None and nullable:
            return None
        if types is _NUMBER:
            if isinstance(value, bool) or not isinstance(value, _NUMBER) or not math.isfinite(value):
                self.fail(field, f"expected a finite number, got {value!r}")
            return value
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in _as_tuple(types)):
            names = "/".join(t.__name__ for t in _as_tuple(types))
            self.fail(field, f"expected {names}, got {type(value).__name__} {value!r:.60}")
        return value

    def number_map(
        self, obj, field: str, nullable_values: bool = False, ranges=metric_range
    ) -> dict[str, float | None]:
        """A {name: number} mapping; each number finite and inside `ranges(name)` when that is not None."""
        self.check_type(obj, dict, field)
        for k, v in obj.items():
            self.check_type(k, str, f"{field}.{k}")
            self.check_type(v, _NUMBER, f"{field}.{k}", nullable=nullable_values)
            bounds = ranges(k)
            if v is not None and bounds is not None and not bounds[0] <= v <= bounds[1]:
                self.fail(f"{field}.{k}", f"{v!r} is outside [{bounds[0]:g}, {bounds[1]:g}]")
        return obj


def _as_tuple(types):
    return types if isinstance(types, tuple) else (types,)


def _check_convention(v: _Validator, value, field: str):
    if value is not None and value not in CONVENTIONS:
        v.fail(field, f"unknown counting convention {value!r}; expected one of {sorted(CONVENTIONS)}")


def validate_record(rec: Any, source: str) -> dict:
    """Check a run record; return it unchanged or raise MalformedError(file, field)."""
    v = _Validator(source)
    v.check_type(rec, dict, "<top>")
    version = v.require(rec, "schema_version", int)
    if version != SCHEMA_VERSION:
        v.fail("schema_version", f"unsupported version {version}; this code reads {SCHEMA_VERSION}")
    paper = v.require(rec, "paper", str)
    if paper not in PAPERS:
        v.fail("paper", f"unknown paper {paper!r}; expected one of {PAPERS}")
    v.require(rec, "row", str, nullable=True)
    kind = v.require(rec, "kind", str)
    if kind not in RECORD_KINDS:
        v.fail("kind", f"expected one of {RECORD_KINDS}, got {kind!r}")
    v.require(rec, "variant", dict)
    _check_convention(v, v.require(rec, "convention", str, nullable=True), "convention")
    v.require(rec, "seed", int, nullable=True)
    v.number_map(v.require(rec, "metrics", dict), "metrics")
    data = v.require(rec, "data", dict)
    name = v.require(data, "name", str, "data.")
    n = v.optional(data, "n", int, "data.")
    if n is not None and n < 0:
        v.fail("data.n", f"expected a number of examples >= 0, got {n}")
    split = v.optional(data, "split", str, "data.")
    full = FULL_SIZE.get((name, split))
    if kind == "reproduction" and full is not None and n != full:
        v.fail(
            "data.n",
            f"a 'reproduction' record must be measured on the full {name} {split} split ({full:,} examples), "
            f"got {n}; a run on a subset is kind 'smoke' (the authors' checkpoints: 'released-model')",
        )
    for key in ("config", "code", "env", "timings"):
        v.optional(rec, key, dict)
    v.require(rec, "run_id", str)
    v.require(rec, "created", str)
    return rec


def validate_reported(table: Any, source: str) -> dict:
    """Check a reported-table file; return it unchanged or raise MalformedError(file, field)."""
    v = _Validator(source)
    v.check_type(table, dict, "<top>")
    version = v.require(table, "schema_version", int)
    if version != SCHEMA_VERSION:
        v.fail("schema_version", f"unsupported version {version}; this code reads {SCHEMA_VERSION}")
    paper = v.require(table, "paper", str)
    if paper not in PAPERS:
        v.fail("paper", f"unknown paper {paper!r}; expected one of {PAPERS}")
    v.require(table, "title", str)
    sources = v.require(table, "sources", dict)
    for i, name in enumerate(v.optional(table, "own_methods", list, default=[])):  # see check.is_own_row
        v.check_type(name, str, f"own_methods[{i}]")
    rows = v.require(table, "rows", list)
    keys = set()
    for i, row in enumerate(rows):
        w = f"rows[{i}]."
        key = v.require(row, "key", str, w)
        w = f"rows[{key}]."
        if key in keys:
            v.fail(f"{w}key", "duplicate row key")
        keys.add(key)
        src = v.require(row, "source", str, w)
        if src not in sources:
            v.fail(f"{w}source", f"{src!r} is not listed under 'sources'")
        for f in ("dataset", "model", "statistic"):
            v.require(row, f, str, w)
        v.optional(row, "arch", str, w)
        v.optional(row, "variant", dict, w)
        _check_convention(v, v.require(row, "convention", str, w, nullable=True), f"{w}convention")
        metrics = v.number_map(v.require(row, "metrics", dict, w), f"{w}metrics", nullable_values=True)
        if not metrics:
            v.fail(f"{w}metrics", "no metrics")
        unavailable = v.optional(row, "unavailable", dict, w, default={})
        for m, val in metrics.items():
            if val is None and m not in unavailable:
                v.fail(f"{w}metrics.{m}", "null value needs a reason under 'unavailable'")
        for m in v.optional(row, "uncertain", list, w, default=[]):
            if m not in metrics:
                v.fail(f"{w}uncertain", f"{m!r} is not one of the row's metrics")
        v.number_map(v.optional(row, "tolerance", dict, w, default={}), f"{w}tolerance", ranges=_tolerance_range)
        v.optional(row, "note", str, w)
    for i, chk in enumerate(v.optional(table, "checks", list, default=[])):
        w = f"checks[{i}]."
        v.require(chk, "name", str, w)
        kind = v.require(chk, "kind", str, w)
        if kind not in CHECK_KINDS:
            v.fail(f"{w}kind", f"expected one of {CHECK_KINDS}, got {kind!r}")
        expect = v.optional(chk, "expect", str, w, default="consistent")
        if expect not in ("consistent", "inconsistent"):
            v.fail(f"{w}expect", "expected 'consistent' or 'inconsistent'")
        tol = v.optional(chk, "tol", _NUMBER, w)
        if tol is not None and tol < 0:
            v.fail(f"{w}tol", f"a tolerance must be >= 0, got {tol!r}")
    return table


def _tolerance_range(name: str) -> tuple[float, float]:
    """Tolerances are widths: at least 0."""
    return (0.0, float("inf"))
