"""Writing and reading run records (see `shared.results.schema` for the fields)."""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import json
import os
import platform
import re
import secrets
import subprocess
import sys
from pathlib import Path

from shared.errors import MalformedError, UserError
from shared.paths import atomic_write_text
from shared.results.schema import SCHEMA_VERSION, validate_record


def code_version() -> dict:
    """Git commit and dirty flag of the working tree (when run from a checkout), plus package version."""
    info: dict = {"package": _version("pruning-repro")}
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        info.update(git_commit=commit, dirty=bool(dirty))
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def environment(frameworks: tuple[str, ...] = (), device: str = "cpu", **extra) -> dict:
    """Python, platform and framework versions (read from package metadata, without importing them)."""
    fw = {}
    for name in frameworks:
        dists = {"tensorflow": ("tensorflow", "tensorflow-cpu")}.get(name, (name,))
        fw[name] = next((v for v in map(_version, dists) if v), None)
    env = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "frameworks": fw,
        "device": device,
    }
    env.update(extra)
    return env


def new_run_id(paper: str) -> str:
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{paper}-{stamp}-{secrets.token_hex(3)}"


def make_record(
    paper: str,
    row: str | None,
    kind: str,
    *,
    metrics: dict,
    data: dict,
    variant: dict | None = None,
    convention: str | None = None,
    seed: int | None = None,
    config: dict | None = None,
    timings: dict | None = None,
    frameworks: tuple[str, ...] = (),
    device: str = "cpu",
    run_dir: str | None = None,
    env_extra: dict | None = None,
) -> dict:
    """Build and validate a run record."""
    record = {
        "schema_version": SCHEMA_VERSION,
        "paper": paper,
        "row": row,
        "kind": kind,
        "variant": dict(variant or {}),
        "convention": convention,
        "seed": seed,
        "metrics": {k: float(v) if isinstance(v, float) else v for k, v in metrics.items()},
        "data": dict(data),
        "config": _jsonable(config or {}),
        "code": code_version(),
        "env": environment(frameworks, device, **(env_extra or {})),
        "timings": dict(timings or {}),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "run_id": new_run_id(paper),
        "run_dir": run_dir,
    }
    return validate_record(record, f"<record {record['run_id']}>")


def _jsonable(obj):
    return json.loads(json.dumps(obj, default=str))


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")


def write_record(record: dict, folder: str | os.PathLike) -> Path:
    """Write a record as `<folder>/<paper>/<row>__<run_id>.json`; never overwrites an existing file."""
    validate_record(record, f"<record {record.get('run_id')}>")
    folder = Path(folder) / record["paper"]
    path = folder / f"{_slug(record['row'] or 'adhoc')}__{record['run_id']}.json"
    if path.exists():
        raise FileExistsError(f"{path} exists; records are never overwritten")
    atomic_write_text(path, json.dumps(record, indent=1, sort_keys=True) + "\n")
    return path


class _DuplicateKey(ValueError):
    pass


def _no_duplicate_keys(pairs: list[tuple[str, object]]) -> dict:
    """json `object_pairs_hook`: a key given twice is an error (json.loads would keep the last silently)."""
    out: dict = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _parse_json(path: Path):
    try:
        return json.loads(path.read_text(), object_pairs_hook=_no_duplicate_keys)
    except _DuplicateKey as err:
        raise MalformedError(f"{path}: field '{err}' is given twice; a run record names each field once") from err
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise MalformedError(f"{path}: not a readable JSON run record: {err}") from err


def read_record(path: str | os.PathLike) -> dict:
    path = Path(path)
    return validate_record(_parse_json(path), str(path))


def is_record(obj) -> bool:
    """Whether a parsed JSON file claims to be a run record (others, e.g. config.json, are skipped): it
    has `schema_version` and one of `run_id`, `paper`, `kind`. A claimed record is then validated."""
    return isinstance(obj, dict) and "schema_version" in obj and any(k in obj for k in ("run_id", "paper", "kind"))


def find_records(paths) -> tuple[list[tuple[Path, dict]], list[Path]]:
    """Run records under the given folders (recursively) or files, validated, in a stable order.

    Returns (records, skipped): JSON files that are not run records (a run folder's config.json,
    stage.json, ...) are skipped and listed. A path that does not exist, a file given by name that is
    not a record, and a malformed record (or a .json that is not JSON) are errors naming the file.
    """
    found: dict[Path, None] = {}  # ordered, without duplicates (a folder may be given twice)
    named: set[Path] = set()
    for given in paths:
        given = Path(given)
        if given.is_file():
            found.setdefault(given.resolve(), None)
            named.add(given.resolve())
        elif given.is_dir():
            for path in sorted(given.rglob("*.json")):
                found.setdefault(path.resolve(), None)
        else:
            raise UserError(f"run records folder {given} does not exist (expected a folder of *.json run records)")
    records, skipped = [], []
    for path in found:
        obj = _parse_json(path)
        if is_record(obj):
            records.append((path, validate_record(obj, str(path))))
        elif path in named:
            raise MalformedError(f"{path}: not a run record (no 'schema_version' with 'run_id', 'paper' or 'kind')")
        else:
            skipped.append(path)
    return records, skipped


def iter_records(folders) -> list[tuple[Path, dict]]:
    """All run records under the given folders (recursively), validated; other JSON files are skipped."""
    return find_records(folders)[0]
