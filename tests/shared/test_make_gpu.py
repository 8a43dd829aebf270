"""The GPU path through make: `GPU=1 make <target>` runs each paper's targets in its framework's GPU
environment and never installs the CPU extras there (checked with `make -n`, which runs nothing)."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")

TORCH_PAPERS = ("dsp", "bip")
TF_PAPERS = ("ista", "ekg", "dcp")


def make_n(*args: str) -> str:
    out = subprocess.run(
        ["make", "-n", *args], cwd=REPO, capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"}
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def paper_targets() -> dict[str, list[str]]:
    text = "".join(p.read_text() for p in sorted((REPO / "mk").glob("*.mk")))
    targets: dict[str, list[str]] = {}
    for name in re.findall(r"^([a-z0-9]+-[a-z0-9-]+):", text, flags=re.M):
        targets.setdefault(name.split("-")[0], []).append(name)
    return targets


def test_every_paper_target_runs_in_its_frameworks_gpu_environment():
    targets = paper_targets()
    assert set(TORCH_PAPERS + TF_PAPERS) <= set(targets), targets.keys()
    for paper in TORCH_PAPERS + TF_PAPERS:
        own, other = (".venv-torch/", ".venv-tf/") if paper in TORCH_PAPERS else (".venv-tf/", ".venv-torch/")
        for target in targets[paper]:
            commands = make_n("GPU=1", target)
            assert f"{own}bin/python" in commands, (target, commands)
            assert other not in commands, (target, commands)
            assert "'.[all]'" not in commands and ".venv/" not in commands, (target, commands)


def test_gpu_suite_and_demo_pass_both_interpreters_and_build_only_gpu_environments():
    for target in ("test", "demo"):
        commands = make_n("GPU=1", target)
        assert 'TORCH_PY=".venv-torch/bin/python"' in commands and 'TF_PY=".venv-tf/bin/python"' in commands
        assert "'.[all]'" not in commands


def test_cpu_targets_use_the_one_cpu_environment():
    assert ".venv/bin/python -m dsp_torch.bench" in make_n("dsp-bench")
    assert ".venv/bin/python -m ista_tf.bench" in make_n("ista-bench")
    assert ".venv-torch" not in make_n("test") and ".venv-tf" not in make_n("test")


def test_help_prints_no_colour_codes_off_a_terminal():
    out = subprocess.run(["make", "help"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "dsp-bench" in out.stdout
    assert "\033[" not in out.stdout
    assert "GPU=1" in out.stdout and "SMOKE=1" in out.stdout
