"""The DCP scripts: valid bash, and their DRY_RUN plan uses PocketFlow's entry point and flags."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.script_plan import dry_run_plan

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = sorted((REPO / "scripts" / "dcp").glob("*.sh"))


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_is_valid_bash(script):
    subprocess.run(["bash", "-n", str(script)], check=True)


def plan(script: str, **env) -> list[str]:
    return dry_run_plan(f"scripts/dcp/{script}", **env)


def test_table1_plan_runs_the_paper_and_pocketflow_rows():
    lines = plan("cifar10_table1.sh", DATA_DIR="/data")
    dcp = [line for line in lines if "--learner dis-chn-pruned" in line]
    assert len(dcp) == 2
    assert "--dcp_variant paper --resnet_size 56 --dcp_prune_ratio 0.5 --dcp_nb_stages 3" in dcp[0]
    assert "--resnet_size 20 --dcp_prune_ratio 0.5 --dcp_nb_stages 3" in dcp[1] and "--dcp_variant" not in dcp[1]
    assert all("dcp_tf.resnet_at_cifar10_run" in line for line in lines[:4])
    assert "--nb_epochs_rat 1.6" in lines[0]  # the paper's 400-epoch baseline


def test_table1_smoke_plan_is_tiny():
    lines = plan("cifar10_table1.sh", SMOKE="1", DATA_DIR="")
    assert all("--resnet_size 8" in line for line in lines[:4])
    assert "--dataset_name digits" in lines[0] and "--nb_iters_train 100" in lines[0]


def test_table5_plan_counts_every_row_then_trains_pocketflow_resnet18_at_each_ratio():
    lines = plan("imagenet_table5.sh", DATA_DIR="/imagenet")
    counts = [line for line in lines if "dcp_tf.flops" in line]
    assert len(counts) == 6 and all("--dcp_variant paper" in line for line in counts)
    train = [line for line in lines if "resnet_at_ilsvrc12_run" in line]
    assert "--learner full-prec" in train[0] and "--data_dir /imagenet" in train[0]
    etas = [line.split("--dcp_prune_ratio ")[1].split()[0] for line in train[1:]]
    assert etas == ["0.3", "0.5", "0.7"] and all("--learner dis-chn-pruned" in line for line in train[1:])
    assert not any("--image_size" in line for line in train)  # the full recipe's 224 px


def test_table5_smoke_plan_generates_a_folder_and_runs_small():
    lines = plan("imagenet_table5.sh", SMOKE="1", DATA_DIR="")
    assert any("write_jpeg_folder" in line for line in lines)
    train = [line for line in lines if "resnet_at_ilsvrc12_run" in line]
    assert len(train) == 2 and all("--image_size 32" in line for line in train)
