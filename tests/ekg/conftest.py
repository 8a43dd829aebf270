"""Fixtures of the ekg_tf2 tests: small splits, and the replica check started in the background (two
logical CPU devices need a fresh interpreter; starting it with the first test overlaps its TensorFlow
start-up and tracing with the other tests)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[2]
REPLICA_TEST = "test_two_cpu_replicas_agree_with_one"


@pytest.fixture(scope="session")
def digits_split():
    from shared.data import load_image_classification

    return load_image_classification("digits", "train").subset(40), load_image_classification("digits", "test").subset(
        24
    )


class BackgroundRun:
    def __init__(self, args: list[str]):
        self.out, self.err = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
        self.process = subprocess.Popen(args, cwd=REPO, stdout=self.out, stderr=self.err, text=True)

    def result(self, timeout: float) -> tuple[int, str, str]:
        code = self.process.wait(timeout=timeout)
        self.out.seek(0)
        self.err.seek(0)
        return code, self.out.read(), self.err.read()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.out.close()
        self.err.close()


@pytest.fixture(scope="session", autouse=True)
def replica_check(request):
    if not any(item.name == REPLICA_TEST for item in request.session.items):
        yield None
        return
    run = BackgroundRun([sys.executable, "-m", "tests.ekg.replica_check"])
    yield run
    run.close()
