"""Importing shared (all framework-free modules) must not pull in torch or tensorflow."""

import subprocess
import sys

from tests.conftest import REPO

MODULES = [
    "shared",
    "shared.data",
    "shared.data.cifar",
    "shared.data.digits",
    "shared.data.__main__",
    "shared.flops",
    "shared.archs",
    "shared.safe_pickle",
    "shared.paths",
    "shared.errors",
    "shared.bench",
    "shared.metrics_log",
    "shared.results",
    "shared.results.check",
    "shared.results.tables",
    "shared.results.__main__",
    "shared.results.records",
]


def test_shared_imports_no_framework():
    code = (
        "import importlib, pkgutil, sys\n"
        f"for m in {MODULES!r}: importlib.import_module(m)\n"
        "import shared.data as d\n"
        "for info in pkgutil.iter_modules(d.__path__):\n"
        "    importlib.import_module('shared.data.' + info.name)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'tensorflow', 'keras'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"shared imported frameworks: {out.stdout.strip()[:200]}"
