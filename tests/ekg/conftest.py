"""Fixtures of the ekg_tf2 tests: small splits, and the replica check started in the background (two
logical CPU devices need a fresh interpreter; starting it with the first test overlaps its TensorFlow
start-up and tracing with the other tests)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.background import BackgroundRun

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[2]
REPLICA_TEST = "test_two_cpu_replicas_agree_with_one"


@pytest.fixture(scope="session")
def digits_split():
    from shared.data import load_image_classification

    return load_image_classification("digits", "train").subset(40), load_image_classification("digits", "test").subset(
        24
    )


@pytest.fixture(scope="session", autouse=True)
def replica_check(request):
    if not any(item.name == REPLICA_TEST for item in request.session.items):
        yield None
        return
    run = BackgroundRun([sys.executable, "-m", "tests.ekg.replica_check"])
    yield run
    run.close()
