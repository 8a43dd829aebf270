"""The BiP reproduction scripts: valid bash, and the plans they print under DRY_RUN=1 use the original
train.py commands with the right configs, k grids and seeds."""

import subprocess

import pytest

from tests.conftest import REPO
from tests.script_plan import dry_run_plan

SCRIPTS = ["table1.sh", "fig3_unstructured.sh", "fig4_filter.sh", "time_vs_imp.sh", "lib.sh"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_bash_syntax(script):
    subprocess.run(["bash", "-n", str(REPO / "scripts" / "bip" / script)], check=True)


def _plan(script, **env):
    return dry_run_plan(f"scripts/bip/{script}", **env)


def test_table1_plan():
    columns = "CIFAR100:resnet20s CIFAR10:vgg16_bn"  # two of the six default columns keep the test short
    plan = _plan("table1.sh", DATA_DIR="/data", COLUMNS=columns)
    train = [c for c in plan if "bip_torch.train" in c]
    # 3 seeds x 2 columns x (pretrain + 12 k x (BiP + HYDRA prune + finetune + OMP) + one IMP run)
    assert len(train) == 3 * 2 * (1 + 12 * 4 + 1)
    assert any("configs/CIFAR100/bip.yml" in c and "--arch resnet20s" in c and "--k 0.0687" in c for c in plan)
    assert any("--baseline imp" in c and "--k 0.0687" in c and "--arch vgg16_bn" in c for c in plan)
    assert all("--data-dir /data" in c for c in train)
    assert {c.split("--seed ")[1].split()[0] for c in train} == {"1", "2", "3"}
    assert plan[-2].endswith("bip_torch.tickets --records runs/bip/records")  # Table 1 from the curves
    assert plan[-1].endswith(
        "shared.results check --paper bip --records runs/bip/records --only-run"
    )  # never the committed records by default


def test_table1_default_columns():
    out = subprocess.run(["grep", "-o", "COLUMNS:-CIFAR10[^}]*", str(REPO / "scripts/bip/table1.sh")],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    full = out.strip().splitlines()[-1].removeprefix("COLUMNS:-").split()  # the non-smoke default
    assert full == ["CIFAR10:resnet18", "CIFAR10:resnet20s", "CIFAR10:resnet56s", "CIFAR10:vgg16_bn",
                    "CIFAR100:resnet18", "CIFAR100:resnet20s"]  # fmt: skip


def test_fig4_plan_is_filter_wise():
    plan = [c for c in _plan("fig4_filter.sh", DATA_DIR="/data") if "--exp-mode prune" in c]
    assert len(plan) == 3 * 4 * 8 and all("--layer-type filter" in c and "bip.yml" in c for c in plan)


def test_smoke_plan_uses_tiny_runs():
    plan = [c for c in _plan("fig3_unstructured.sh", SMOKE="1", DATA_DIR="") if "bip_torch.train" in c]
    assert plan and all("--dataset digits" in c and "--train-limit 256" in c for c in plan)
