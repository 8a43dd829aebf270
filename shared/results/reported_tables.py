"""Loading the papers' reported tables (`shared/results/reported/<paper>.yaml`)."""

from __future__ import annotations

from pathlib import Path

import yaml

from shared.errors import MalformedError
from shared.results.schema import PAPERS, validate_reported

REPORTED_DIR = Path(__file__).resolve().parent / "reported"


class _UniqueKeyLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # the C parser when built
    """yaml.safe_load, except that a mapping key given twice is an error (safe_load keeps the last)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is given twice in one mapping", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


def load_table(path: str | Path) -> dict:
    path = Path(path)
    try:
        table = yaml.load(path.read_text(), Loader=_UniqueKeyLoader)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise MalformedError(f"{path}: not a readable YAML table: {err}") from err
    return validate_reported(table, str(path))


def load_tables(folder: str | Path | None = None, papers=None) -> dict[str, dict]:
    """{paper: table} for every `<paper>.yaml` in `folder` (default: the packaged tables), in PAPERS order."""
    folder = Path(folder) if folder else REPORTED_DIR
    tables = {}
    for path in sorted(folder.glob("*.yaml")):
        if papers and path.stem not in papers:  # parse only what is asked for
            continue
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
