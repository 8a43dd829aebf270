"""scripts/ekg: DRY_RUN prints the original commands with the README flags (the ImageNet recipe
inferred); both scripts are wired to the results check and to SMOKE sizes. The ImageNet path itself
runs end to end in test_imagenet.py."""

from __future__ import annotations

from pathlib import Path

from tests.script_plan import dry_run_plan

REPO = Path(__file__).resolve().parents[2]


def _dry(script: str, **env) -> list[str]:
    return dry_run_plan(f"scripts/ekg/{script}", **env)


def test_ablation_script_runs_the_readme_command_per_seed_and_both_variants():
    cmds = _dry("cifar_ablation.sh", SEEDS="0 1")
    search = [c for c in cmds if "ekg_tf2.train_cifar" in c]
    kd = [c for c in cmds if "ekg_tf2.train " in c + " "]
    assert len(search) == 2 * 2  # 2 seeds x CIFAR10/CIFAR100
    assert all("--arch ResNet-56" in c and "--search_target_rate 0.45" in c for c in search)
    assert len(kd) == 4 and all("--Knowledge" in c and "slimmed_params.pkl" in c for c in kd)
    assert not any("--Knowledge" in c for c in search)  # the README default: no memory-bank KD
    assert cmds[-1].endswith("shared.results check --records runs/ekg/ablation/records --paper ekg --only-run")


def test_smoke_sizes_and_the_imagenet_plan():
    cmds = _dry("cifar_ablation.sh", SMOKE="1")
    assert len([c for c in cmds if "train_cifar" in c]) == 1 and "--max_steps 2" in cmds[0]
    plan = _dry("imagenet_resnet50.sh")
    search = [c for c in plan if "ekg_tf2.pruning" in c]
    kd = [c for c in plan if "ekg_tf2.train " in c + " "]
    assert len(search) == len(kd) == 2 and all("--arch ResNet-50 --dataset ILSVRC" in c for c in search + kd)
    assert "--search_target_rate 0.55" in search[0] and "--search_target_rate 0.45" in search[1]
    assert all("--Knowledge --temperature 10" in c and "--learning_rate 0.05" in c for c in kd)
    assert plan[-1].endswith("--paper ekg --only-run")
