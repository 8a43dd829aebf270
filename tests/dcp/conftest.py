"""Fixtures of the dcp_tf tests: a quiet TensorFlow, small data splits, and the runtime checks that need
fresh interpreters (2 logical CPU devices; 2 multi-worker processes), started in the background with the
first dcp test so that their start-up and tracing overlap the other tests; their tests run last."""

from __future__ import annotations

import json
import os
import sys
import tempfile

import pytest

from tests.background import BackgroundRun, free_ports

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

RUNTIME_TESTS = "tests/dcp/test_runtimes.py"


def pytest_collection_modifyitems(config, items):
    """The runtime tests wait for the background runs: put them after the other dcp tests."""
    late = [i for i in items if i.nodeid.startswith(RUNTIME_TESTS)]
    if late:
        rest = [i for i in items if not i.nodeid.startswith(RUNTIME_TESTS)]
        last_dcp = max((k for k, i in enumerate(rest) if i.nodeid.startswith("tests/dcp/")), default=len(rest) - 1)
        items[:] = rest[: last_dcp + 1] + late + rest[last_dcp + 1 :]


@pytest.fixture(scope="session")
def digits_train():
    from shared.data import load_image_classification

    return load_image_classification("digits", "train")


@pytest.fixture(scope="session")
def digits_test():
    from shared.data import load_image_classification

    return load_image_classification("digits", "test")


@pytest.fixture(autouse=True)
def _run_in_tmp(tmp_path, monkeypatch):
    """PocketFlow's default folders (./models, ./logs) are relative: keep them out of the checkout."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="session", autouse=True)
def runtime_runs(request):
    """{"mirrored": tests.dcp.runtimes_check, "workers": [2 x tests.dcp.multiworker_worker]} as
    BackgroundRuns, started when a runtime test is selected (else None)."""
    if not any(item.nodeid.startswith(RUNTIME_TESTS) for item in request.session.items):
        yield None
        return
    root = tempfile.mkdtemp(prefix="dcp-multiworker-")
    workers = [f"127.0.0.1:{p}" for p in free_ports(2)]
    runs = {"mirrored": BackgroundRun([sys.executable, "-m", "tests.dcp.runtimes_check"]), "workers": []}
    saved = os.environ.get("TF_CONFIG")
    try:
        for index in range(2):
            task = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
            os.environ["TF_CONFIG"] = json.dumps(task)
            runs["workers"].append(BackgroundRun([sys.executable, "-m", "tests.dcp.multiworker_worker", root]))
    finally:
        if saved is None:
            os.environ.pop("TF_CONFIG", None)
        else:
            os.environ["TF_CONFIG"] = saved
    yield runs
    for run in [runs["mirrored"], *runs["workers"]]:
        run.close()
