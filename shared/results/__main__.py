"""Cross-check run records against the papers' reported tables.

    python -m shared.results check   [--records DIR ...] [--paper dsp] [--only-run]
    python -m shared.results tables  [--records DIR ...] [--out results/]
    python -m shared.results records [--records DIR ...] [--no-default-records]   # list run records

Records are read from results/records (committed) and any --records folder (e.g. a run folder).
`check` exits non-zero only when a record mismatches its row, a consistency check of a reported
table comes out differently than recorded, or a file is malformed.
"""

from __future__ import annotations

import argparse
import sys

from shared.errors import main_guard
from shared.results.check import compare, format_records, format_report, run_checks
from shared.results.records import iter_records
from shared.results.reported_tables import load_tables
from shared.results.tables import write_tables

DEFAULT_RECORDS = "results/records"


def _load(args):
    tables = load_tables(args.tables, papers=args.paper)
    folders = [DEFAULT_RECORDS] if not args.no_default_records else []
    records = iter_records(folders + list(args.records or []))
    if args.paper:
        records = [(p, r) for p, r in records if r["paper"] in args.paper]
    return tables, records


@main_guard
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m shared.results", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=["check", "tables", "records"])
    parser.add_argument("--records", action="append", help="extra folder (or file) of run records")
    parser.add_argument("--no-default-records", action="store_true", help=f"do not read {DEFAULT_RECORDS}")
    parser.add_argument("--tables", help="folder of reported-table YAML files (default: the packaged ones)")
    parser.add_argument("--paper", action="append", help="restrict to this paper (repeatable)")
    parser.add_argument("--only-run", action="store_true", help="check: hide rows no record covers")
    parser.add_argument("--brief", action="store_true", help="check: list only the checks that are not consistent")
    parser.add_argument("--out", default="results", help="tables: output folder (default results/)")
    args = parser.parse_args(argv)

    tables, records = _load(args)
    comparisons, notes = compare(tables, records)
    smoke = [r for _, r in records if r["kind"] == "smoke"]
    if args.command == "records":
        print(format_records([r for _, r in records]))
        return 0
    if args.command == "tables":
        for path in write_tables(tables, comparisons, smoke, args.out):
            print(f"wrote {path}")
        return 0
    checks = [res for paper, table in tables.items() for res in run_checks(paper, table)]
    print(format_report(comparisons, checks, notes, len(smoke), show_not_run=not args.only_run,
                        show_consistent=not args.brief))
    bad = sum(c.status == "mismatch" for c in comparisons) + sum(r.failed for r in checks)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
