"""Loading the papers' reported tables (`shared/results/reported/<paper>.yaml`)."""

from __future__ import annotations

from pathlib import Path

import yaml

from shared.errors import MalformedError
from shared.results.schema import PAPERS, validate_reported

REPORTED_DIR = Path(__file__).resolve().parent / "reported"


def load_table(path: str | Path) -> dict:
    path = Path(path)
    try:
        table = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise MalformedError(f"{path}: not a readable YAML table: {err}") from err
    return validate_reported(table, str(path))


def load_tables(folder: str | Path | None = None, papers=None) -> dict[str, dict]:
    """{paper: table} for every `<paper>.yaml` in `folder` (default: the packaged tables), in PAPERS order."""
    folder = Path(folder) if folder else REPORTED_DIR
    tables = {}
    for path in sorted(folder.glob("*.yaml")):
        table = load_table(path)
        if path.stem != table["paper"]:
            raise MalformedError(f"{path}: field 'paper': {table['paper']!r} does not match the file name")
        tables[table["paper"]] = table
    order = [p for p in PAPERS if p in tables]
    if papers:
        order = [p for p in order if p in papers]
    return {p: tables[p] for p in order}


def row_index(table: dict) -> dict[str, dict]:
    return {row["key"]: row for row in table["rows"]}
