"""Fixtures of the ekg_tf2 tests: small splits, and the replica checks started in the background (two
logical CPU devices need a fresh interpreter, two workers two processes; starting them with the first
test overlaps their TensorFlow start-up and tracing with the other tests)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.background import BackgroundRun

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[2]
REPLICA_TEST = "test_two_cpu_replicas_agree_with_one"
MULTIWORKER_TEST = "test_two_workers_agree_with_one_process"


@pytest.fixture(scope="session")
def digits_split():
    from shared.data import load_image_classification

    return load_image_classification("digits", "train").subset(40), load_image_classification("digits", "test").subset(
        24
    )


@pytest.fixture(scope="module")
def eager_functions():
    """The module's tf.functions run eagerly (the search's passes over D^val stay traced): a smoke
    pipeline calls each of its other ResNet functions (warm-up, slimmed evaluation, both fine-tunings)
    once or a few times on a few images, where tracing costs several times what running costs. The
    compiled paths are checked on their own (XLA = plain, replicas, workers)."""
    from shared.tf_train import functions_run_eagerly

    with functions_run_eagerly(True):
        yield


def _background(request, test: str, module: str):
    if not any(item.name == test for item in request.session.items):
        yield None
        return
    run = BackgroundRun([sys.executable, "-m", module])
    yield run
    run.close()


@pytest.fixture(scope="session", autouse=True)
def replica_check(request):
    yield from _background(request, REPLICA_TEST, "tests.ekg.replica_check")


@pytest.fixture(scope="session", autouse=True)
def multiworker_check(request):
    yield from _background(request, MULTIWORKER_TEST, "tests.ekg.multiworker_check")
