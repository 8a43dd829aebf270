"""The DSP table scripts: valid bash, and the plan they print under DRY_RUN=1 uses the authors' commands."""

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO
from tests.script_plan import dry_run_plan

SCRIPTS = [
    "scripts/dsp/cifar10_table.sh",
    "scripts/dsp/imagenet_table.sh",
    "scripts/dsp/released_models.sh",
    "scripts/demo.sh",
    "scripts/setup_gpu.sh",
]


@pytest.mark.parametrize("script", SCRIPTS)
def test_bash_syntax(script):
    subprocess.run(["bash", "-n", str(REPO / script)], check=True)


def _plan(script, **env):
    return dry_run_plan(script, **env)


def test_cifar10_table_plan():
    plan = _plan("scripts/dsp/cifar10_table.sh", DATA_DIR="/data")
    assert len(plan) == 5 * (2 * (1 + 3 * 3)) + 1  # seeds x depths x (pretrain + groups x 3 commands) + check
    assert any("cifar_dsp -l 56 " in c and "-g 4 -r 5e-4 --epochs 120" in c for c in plan)
    assert any("cifar_finetune -l 20 " in c and "-g 4 -p 0.63 --epochs 400" in c for c in plan)
    assert all("--data-dir /data" in c for c in plan if "cifar_" in c)
    assert plan[-1].endswith(
        "shared.results check --paper dsp --records runs/dsp/cifar10/records --only-run"
    )  # never the committed records by default


def test_imagenet_table_plan():
    plan = _plan("scripts/dsp/imagenet_table.sh", TRAIN="/t", VAL="/v", R50_WEIGHTS="r50.pth")
    assert sum("imagenet finetune" in c for c in plan) == 6
    assert any("imagenet dsp -a resnet50" in c and "--pretrained r50.pth" in c for c in plan)
    assert any("-a resnet18" in c and "-p 0.80" in c for c in plan)


def test_run_tests_script_fails_when_no_test_runs(tmp_path):
    env = {**os.environ, "PY": sys.executable, "TEST_GROUPS": "tests/shared/test_flops_golden.py"}
    script = str(REPO / "scripts/run_tests.sh")
    out = subprocess.run(
        ["bash", script, "-q", "-k", "no_such_test"], cwd=REPO, capture_output=True, text=True, env=env
    )
    assert out.returncode != 0 and "FAILED" in out.stdout  # pytest exits 5 when nothing ran
    out = subprocess.run(["bash", script, "-q", "-k", "golden"], cwd=REPO, capture_output=True, text=True, env=env)
    assert out.returncode == 0 and "passed" in out.stdout
