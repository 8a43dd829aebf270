"""Fixtures of the dcp_tf tests: a quiet TensorFlow and small data splits."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


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
