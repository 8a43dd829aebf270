"""Cross-check run records against the papers' reported tables.

    python -m shared.results check   [--records DIR ...] [--paper dsp] [--all]
    python -m shared.results tables  [--records DIR ...] [--out DIR | --update-committed]
    python -m shared.results records [--records DIR ...] [--no-default-records]

Each command has its own --help. Records are read from the repository's results/records (committed)
and from any --records folder (searched recursively; JSON files that are not run records, such as a
run folder's config.json, are skipped and counted).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from shared.errors import UserError, main_guard
from shared.results.check import compare, format_check, format_records, run_checks
from shared.results.records import find_records
from shared.results.reported_tables import load_tables
from shared.results.schema import PAPERS
from shared.results.tables import write_tables

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_RECORDS = REPO_ROOT / "results" / "records"  # the committed records, wherever the command runs
COMMITTED_RESULTS = REPO_ROOT / "results"  # TABLES.md and plots/ under version control
DEFAULT_TABLES_OUT = REPO_ROOT / "runs" / "results"  # `tables` writes here unless told otherwise


def _shown(path: Path) -> str:
    """A path for help texts: relative to the repository when inside it."""
    try:
        return str(path.relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--records",
        action="append",
        metavar="DIR",
        help="also read run records under this folder (recursively) or this file; repeatable. "
        "A folder that does not exist is an error",
    )
    p.add_argument(
        "--no-default-records",
        action="store_true",
        help=f"do not read the committed records in {_shown(DEFAULT_RECORDS)}/",
    )
    p.add_argument(
        "--tables", metavar="DIR", help="folder of reported-table YAML files (default: shared/results/reported/)"
    )
    p.add_argument("--paper", action="append", help="restrict to this paper: ekg, dsp, dcp, ista, bip (repeatable)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m shared.results", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{check,tables,records}")

    p = sub.add_parser(
        "check",
        help="compare run records with the papers' numbers; exit 1 on a mismatch",
        description="Compare run records with the papers' reported numbers. By default: one summary line "
        "per paper (match / within noise / mismatch / not run), the rows that have records, and the "
        "consistency checks that are not plainly consistent. Exit status 1 when a record mismatches its row "
        "or a consistency check comes out other than the table file expects; 2 for a malformed file.",
    )
    _add_common(p)
    p.add_argument("--all", action="store_true", help="print every reported row and every consistency check")
    p.add_argument("--brief", action="store_true", help="print only the summaries and what is not as expected")
    p.add_argument("--only-run", action="store_true", help=argparse.SUPPRESS)  # the default now; kept for scripts

    p = sub.add_parser(
        "tables",
        help="write TABLES.md and one plot per paper (default: under runs/results/)",
        description="Write TABLES.md (summary, contents, per paper: its own rows, then the other methods it "
        "compares with) and plots/<paper>.png (accuracy vs reduction, paper vs ours, smoke runs marked apart). "
        f"Writes to {_shown(DEFAULT_TABLES_OUT)}/ unless --out or --update-committed is given.",
    )
    _add_common(p)
    where = p.add_mutually_exclusive_group()
    where.add_argument("--out", metavar="DIR", help="output folder")
    where.add_argument(
        "--update-committed",
        action="store_true",
        help=f"rewrite the committed {_shown(COMMITTED_RESULTS)}/TABLES.md and plots/",
    )

    p = sub.add_parser(
        "records",
        help="list run records found under the given folders",
        description="List every run record under the given folders (recursively): paper, kind, row, data, "
        "seed and main metrics. JSON files that are not run records are skipped and counted.",
    )
    _add_common(p)
    return parser


def _load(args):
    unknown = sorted(set(args.paper or []) - set(PAPERS))
    if unknown:
        raise UserError(f"--paper {', '.join(unknown)}: unknown paper; expected one of {', '.join(PAPERS)}")
    tables = {} if args.command == "records" else load_tables(args.tables, papers=args.paper)
    folders = [] if args.no_default_records or not DEFAULT_RECORDS.is_dir() else [DEFAULT_RECORDS]
    records, skipped = find_records(folders + list(args.records or []))
    if args.paper:
        records = [(p, r) for p, r in records if r["paper"] in args.paper]
    return tables, records, skipped


def _skipped_line(skipped) -> str | None:
    if not skipped:
        return None
    names = sorted({p.name for p in skipped})
    shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
    return f"skipped {len(skipped)} JSON file(s) that are not run records ({shown})"


@main_guard
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "update_committed", False) and (
        args.paper or args.tables or args.records or args.no_default_records
    ):
        raise UserError(
            "--update-committed rewrites the committed TABLES.md for every paper from the packaged tables and the "
            "committed records only: it takes no --paper, --tables, --records or --no-default-records "
            "(use --out DIR for those)"
        )
    tables, records, skipped = _load(args)
    note = _skipped_line(skipped)
    if args.command == "records":
        print(format_records([r for _, r in records]))
        print(f"{len(records)} run record(s)" + (f"; {note}" if note else ""))
        return 0
    comparisons, notes = compare(tables, records)
    smoke = [r for _, r in records if r["kind"] == "smoke"]
    checks = [res for paper, table in tables.items() for res in run_checks(paper, table)]
    if args.command == "tables":
        out = COMMITTED_RESULTS if args.update_committed else Path(args.out) if args.out else DEFAULT_TABLES_OUT
        for path in write_tables(tables, comparisons, smoke, out, checks=checks):
            print(f"wrote {path}")
        if note:
            print(note)
        return 0
    print(
        format_check(
            tables,
            comparisons,
            checks,
            notes + ([note] if note else []),
            smoke,
            show_all=args.all,
            brief=args.brief,
        )
    )
    bad = sum(c.status == "mismatch" for c in comparisons) + sum(r.failed for r in checks)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
