"""Mutation check: does the test suite fail when the method is wrong?

Each subproject keeps a list of one-line changes to its method (`<subproject>/mutations.yaml`). For
every change this script copies the working tree to a scratch folder (once), applies the change
there, runs the tests the list names for it, restores the line and prints whether the tests failed
(killed) or stayed green (survived). The repository itself is never modified.

    python scripts/mutation_check.py                          # every */mutations.yaml
    python scripts/mutation_check.py dsp_torch/mutations.yaml --only dsp-no-second-order
    python scripts/mutation_check.py ista_tf/mutations.yaml --markdown

List format (YAML):

    mutations:
      - id: dsp-no-second-order            # unique name
        file: dsp_torch/dsp_module.py      # path relative to the repository root
        find: 'if self.second_order != "none":'   # text occurring exactly once in the file
        replace: 'if False:'               # its replacement (may span lines with \\n)
        tests: [tests/dsp/test_wrappers.py::test_second_order_reaches_the_logits]
        why: the mixed second-order term is the only route from the task loss to the logits

Before the mutants, the tests of every entry run once on the unchanged copy: a test that already
fails there cannot kill anything, and the entry is reported as `baseline fails`. A mutant whose
tests cannot even be collected (an import error) counts as killed but is flagged `(error)`.
Exit status: 0 when every mutant is killed, 1 when one survives, 2 for a malformed list.
Not part of `make test`: it runs the named tests once per mutant (minutes).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
REQUIRED = ("id", "file", "find", "replace", "tests")


class ListError(Exception):
    """A malformed mutation list (reported with the file and the entry)."""


@dataclass
class Mutation:
    id: str
    file: str
    find: str
    replace: str
    tests: list[str]
    why: str = ""
    source: str = ""
    result: str = "not run"
    seconds: float = 0.0
    detail: str = ""


def load_list(path: Path) -> list[Mutation]:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ListError(f"{path}: cannot read the mutation list: {err}") from err
    if not isinstance(data, dict) or not isinstance(data.get("mutations"), list):
        raise ListError(f"{path}: expected a mapping with a 'mutations' list")
    out = []
    for i, entry in enumerate(data["mutations"]):
        if not isinstance(entry, dict):
            raise ListError(f"{path}: mutation #{i} is not a mapping")
        missing = [k for k in REQUIRED if k not in entry]
        if missing:
            raise ListError(f"{path}: mutation #{i} ({entry.get('id', '?')}) lacks {', '.join(missing)}")
        tests = entry["tests"]
        tests = [tests] if isinstance(tests, str) else list(tests)
        if not tests:
            raise ListError(f"{path}: mutation {entry['id']} names no tests")
        fields = (str(entry[k]) for k in ("id", "file", "find", "replace"))
        m = Mutation(*fields, tests=tests, why=str(entry.get("why", "")))
        m.source = str(path)
        target = REPO / m.file
        if not target.is_file():
            raise ListError(f"{path}: mutation {m.id}: {m.file} does not exist")
        hits = target.read_text().count(m.find)
        if hits != 1:
            raise ListError(f"{path}: mutation {m.id}: 'find' text occurs {hits} times in {m.file} (expected once)")
        if m.find == m.replace:
            raise ListError(f"{path}: mutation {m.id}: 'replace' equals 'find'")
        out.append(m)
    ids = [m.id for m in out]
    dup = {i for i in ids if ids.count(i) > 1}
    if dup:
        raise ListError(f"{path}: duplicate mutation ids {sorted(dup)}")
    return out


def scratch_copy(dest: Path) -> Path:
    """The working tree (tracked files and untracked, not ignored ones) copied under `dest`."""
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    root = dest / "repo"
    for name in filter(None, files):
        rel = name.decode()
        src = REPO / rel
        if not src.is_file():  # deleted but still tracked
            continue
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, root / rel)
    return root


def test_env(root: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(root), "PYTHONDONTWRITEBYTECODE": "1"}
    # conftest's defaults look next to the repository; the scratch copy has no neighbours
    for var, default in (
        ("PRUNING_DATA_DIR", REPO.parent / "shared" / "data"),
        ("PRUNING_CHECKPOINT_DIR", REPO.parent / "shared" / "checkpoints"),
    ):
        if not env.get(var) and default.is_dir():
            env[var] = str(default)
    return env


def run_tests(root: Path, tests: list[str], timeout: int, python: str) -> tuple[int, str]:
    cmd = [python, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-o", "addopts=--strict-markers", *tests]
    try:
        proc = subprocess.run(cmd, cwd=root, env=test_env(root), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return 124, "timed out"
    tail = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    return proc.returncode, tail[-1] if tail else ""


def check(mutations: list[Mutation], timeout: int, python: str, keep: bool, baseline_runs: bool = True) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="mutation-check-"))
    try:
        root = scratch_copy(tmp)
        baseline: dict[tuple[str, ...], tuple[int, str]] = {}
        for m in mutations:
            key = tuple(m.tests)
            if key not in baseline:
                baseline[key] = run_tests(root, m.tests, timeout, python) if baseline_runs else (0, "")
            rc, tail = baseline[key]
            if rc != 0:
                m.result, m.detail = "baseline fails", tail
                continue
            target = root / m.file
            original = target.read_text()
            target.write_text(original.replace(m.find, m.replace, 1))
            start = time.time()
            try:
                rc, tail = run_tests(root, m.tests, timeout, python)
            finally:
                target.write_text(original)
            m.seconds = time.time() - start
            m.detail = tail
            if rc == 1:
                m.result = "killed"
            elif rc == 0:
                m.result = "survived"
            elif rc == 124:
                m.result = "killed (timeout)"
            else:  # 2: interrupted / collection error, 4: usage, 5: no tests
                m.result = f"killed (error, pytest exit {rc})" if rc in (2, 3) else f"error (pytest exit {rc})"
            print(f"  {m.id}: {m.result} ({m.seconds:.0f} s)", file=sys.stderr, flush=True)
    finally:
        if keep:
            print(f"scratch copy kept at {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def report(mutations: list[Mutation], markdown: bool) -> str:
    if markdown:
        lines = ["| change | file | tests | result |", "|---|---|---|---|"]
        for m in mutations:
            tests = ", ".join(f"`{t.split('::')[-1]}`" for t in m.tests)
            lines.append(f"| {m.why or m.id} | `{m.file}` | {tests} | {m.result} |")
    else:
        width = max(len(m.id) for m in mutations)
        lines = [f"{'mutation':<{width}}  {'result':<16} {'s':>5}  file"]
        for m in mutations:
            lines.append(f"{m.id:<{width}}  {m.result:<16} {m.seconds:5.0f}  {m.file}")
    killed = sum(m.result.startswith("killed") for m in mutations)
    lines.append(f"\n{killed} of {len(mutations)} mutants killed")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("lists", nargs="*", help="mutation lists (default: every <subproject>/mutations.yaml)")
    p.add_argument("--only", action="append", help="run only the mutation with this id (repeatable)")
    p.add_argument("--timeout", type=int, default=900, help="seconds per test run (default 900)")
    p.add_argument("--python", default=sys.executable, help="interpreter that runs pytest (default: this one)")
    p.add_argument("--markdown", action="store_true", help="print the result as a Markdown table")
    p.add_argument("--dry-run", action="store_true", help="validate the lists and print them, run nothing")
    p.add_argument("--keep", action="store_true", help="keep the scratch copy (to inspect a mutant)")
    p.add_argument(
        "--no-baseline", action="store_true", help="skip the runs on the unchanged copy (tests known to pass)"
    )
    args = p.parse_args(argv)
    lists = [Path(x) for x in args.lists] or sorted(REPO.glob("*/mutations.yaml"))
    if not lists:
        print("no mutation lists found (<subproject>/mutations.yaml)", file=sys.stderr)
        return 2
    try:
        mutations = [m for path in lists for m in load_list(path if path.is_absolute() else REPO / path)]
    except ListError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.only:
        unknown = set(args.only) - {m.id for m in mutations}
        if unknown:
            print(f"error: --only names unknown mutation ids {sorted(unknown)}", file=sys.stderr)
            return 2
        mutations = [m for m in mutations if m.id in args.only]
    if args.dry_run:
        for m in mutations:
            print(f"{m.id}: {m.file}: {m.find!r} -> {m.replace!r}; tests {' '.join(m.tests)}")
        return 0
    print(f"{len(mutations)} mutants from {', '.join(str(x) for x in lists)}", file=sys.stderr, flush=True)
    check(mutations, args.timeout, args.python, args.keep, baseline_runs=not args.no_baseline)
    print(report(mutations, args.markdown))
    return 0 if all(m.result.startswith("killed") for m in mutations) else 1


if __name__ == "__main__":
    sys.exit(main())
