"""Fixtures of the ista_tf tests: small data splits, a quiet TensorFlow, and the replica check started in
the background."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[2]
REPLICA_TESTS = {
    "test_two_cpu_replicas_agree_with_one_on_the_same_global_batch",
    "test_resnet20_xla_step_with_weight_decay_equals_the_plain_step",
}


@pytest.fixture(scope="session")
def digits_train():
    from shared.data import load_image_classification

    return load_image_classification("digits", "train")


@pytest.fixture(scope="session")
def digits_test():
    from shared.data import load_image_classification

    return load_image_classification("digits", "test")


class BackgroundRun:
    """A command started now, its output collected into temporary files (no pipe to fill up)."""

    def __init__(self, args: list[str]):
        self.out = tempfile.TemporaryFile("w+")
        self.err = tempfile.TemporaryFile("w+")
        self.process = subprocess.Popen(args, cwd=REPO, stdout=self.out, stderr=self.err, text=True)

    def result(self, timeout: float) -> tuple[int, str, str]:
        """(exit status, stdout, stderr), waiting at most `timeout` seconds for the end."""
        returncode = self.process.wait(timeout=timeout)
        self.out.seek(0)
        self.err.seek(0)
        return returncode, self.out.read(), self.err.read()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.out.close()
        self.err.close()


@pytest.fixture(scope="session", autouse=True)
def replica_check(request):
    """`python -m tests.ista.replica_check` (2 logical CPU devices need a fresh interpreter), started
    with the first ista test when the replica test is selected, so that its TensorFlow start-up and
    tracing (single-threaded, ~15 s) overlap the other tests instead of adding to them."""
    if not any(item.name in REPLICA_TESTS for item in request.session.items):
        yield None
        return
    run = BackgroundRun([sys.executable, "-m", "tests.ista.replica_check"])
    yield run
    run.close()
