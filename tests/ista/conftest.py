"""Fixtures of the ista_tf tests: small data splits, a quiet TensorFlow, and the replica check started in
the background."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.background import BackgroundRun

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
