"""Test configuration: framework markers, real-data fixtures.

Real data: the CIFAR-10 subset and the authors' checkpoints are looked up in $PRUNING_DATA_DIR and
$PRUNING_CHECKPOINT_DIR, else next to the repository (../shared/data, ../shared/checkpoints). Tests
that need them skip with a reason when they are absent.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _available(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def pytest_collection_modifyitems(config, items):
    skip_torch = pytest.mark.skip(reason="PyTorch is not installed")
    skip_tf = pytest.mark.skip(reason="TensorFlow is not installed")
    have_torch, have_tf = _available("torch"), _available("tensorflow")
    for item in items:
        if "torch" in item.keywords and not have_torch:
            item.add_marker(skip_torch)
        if "tf" in item.keywords and not have_tf:
            item.add_marker(skip_tf)
        if "gpu" in item.keywords:
            if not have_torch:
                item.add_marker(pytest.mark.skip(reason="needs a GPU"))
            else:
                import torch

                if not torch.cuda.is_available():
                    item.add_marker(pytest.mark.skip(reason="needs a GPU"))


def _dir_from(env: str, default: Path) -> Path:
    value = os.environ.get(env)
    return Path(value) if value else default


@pytest.fixture(scope="session")
def data_root() -> Path:
    return _dir_from("PRUNING_DATA_DIR", REPO.parent / "shared" / "data")


@pytest.fixture(scope="session")
def cifar_dir(data_root) -> Path:
    """The real CIFAR-10 subset (folder holding cifar-10-batches-py files)."""
    for cand in (data_root / "cifar10-subset" / "cifar-10-batches-py", data_root / "cifar-10-batches-py", data_root):
        if (cand / "test_batch").is_file():
            return cand
    pytest.skip(f"CIFAR-10 subset not found under {data_root} (set PRUNING_DATA_DIR)")


@pytest.fixture(scope="session")
def checkpoint_root() -> Path:
    root = _dir_from("PRUNING_CHECKPOINT_DIR", REPO.parent / "shared" / "checkpoints")
    if not root.is_dir():
        pytest.skip(f"authors' checkpoints not found at {root} (set PRUNING_CHECKPOINT_DIR)")
    return root
