"""The original commands parse unchanged, --help explains every flag, the scripts print their plan."""

from __future__ import annotations

import os
import subprocess

import pytest

pytestmark = pytest.mark.tf

pytest.importorskip("tensorflow")

from ista_tf import bench, cifar10_eval, cifar10_train, demo  # noqa: E402
from tests.conftest import REPO  # noqa: E402

README_COMMANDS = [  # the seed README, verbatim after `python cifar10_train.py` / `python cifar10_eval.py`
    (cifar10_train, "--l1_penalty 0.001 --max_steps 30000 --checkpoint_version 0"),
    (cifar10_eval, "--checkpoint_version 1"),
    (cifar10_train, "--l1_penalty 0.005 --max_steps 50000 --checkpoint_version 1"),
    (cifar10_eval, "--checkpoint_version 2"),
    (cifar10_train, "--checkpoint_version 2 --l1_penalty 0.0 --max_steps 50000 --learning_rate 0.01"),
    (cifar10_eval, "--checkpoint_version 3"),
]


@pytest.mark.parametrize("module, args", README_COMMANDS)
def test_readme_commands_parse_with_the_original_defaults(module, args):
    ns = module.build_parser().parse_args(args.split())
    assert ns.batch_size == 125 and ns.model == "resnet20"
    if module is cifar10_train:
        assert ns.weight_decay == 0.0005 and ns.fold == "released-code" and ns.alpha == 1.0
        assert ns.log_frequency == 100 and ns.squeeze_model is True
    else:
        assert ns.is_compressed is True and ns.checkpoint_iter == -1


def test_original_defaults_without_flags():
    ns = cifar10_train.build_parser().parse_args([])
    assert (ns.checkpoint_version, ns.l1_penalty, ns.max_steps, ns.learning_rate) == (0, 0.005, 100000, 0.1)
    assert cifar10_eval.build_parser().parse_args([]).checkpoint_version == 1
    assert cifar10_eval.build_parser().parse_args(["--is_compressed=False"]).is_compressed is False


@pytest.mark.parametrize("module", [cifar10_train, cifar10_eval, bench, demo])
def test_help_explains_every_flag(module, capsys):
    parser = module.build_parser()
    undocumented = [a.option_strings for a in parser._actions if a.option_strings and not (a.help or "").strip()]
    assert undocumented == []
    with pytest.raises(SystemExit) as exit_:
        module.main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    if module is cifar10_train:
        for flag in (
            "--l1_penalty",
            "--max_steps",
            "--checkpoint_version",
            "--learning_rate",
            "--train_dir",
            "--batch_size",
            "--weight_decay",
            "--data_dir",
            "--model",
            "--xla",
            "--accum_steps",
            "--distribute",
            "--fold",
            "--alpha",
            "--records",
            "--seed",
        ):
            assert flag in out, flag


@pytest.mark.parametrize("script", ["cifar10_readme.sh", "paper_settings.sh"])
def test_scripts_print_their_plan(script):
    path = REPO / "scripts" / "ista" / script
    assert subprocess.run(["bash", "-n", str(path)], check=False).returncode == 0
    for smoke in ("0", "1"):
        env = {**os.environ, "DRY_RUN": "1", "SMOKE": smoke, "DATA_DIR": "/data/cifar"}
        out = subprocess.run(["bash", str(path)], env=env, capture_output=True, text=True, check=True).stdout
        lines = [line for line in out.splitlines() if line.startswith("+ ")]
        assert sum("ista_tf.cifar10_train" in line for line in lines) >= 3
        assert sum("ista_tf.cifar10_eval" in line for line in lines) >= 2
        assert all("--data_dir /data/cifar" in line for line in lines if "ista_tf." in line)
        if smoke == "0" and script == "cifar10_readme.sh":
            assert "--l1_penalty 0.005 --max_steps 50000 --checkpoint_version 1" in out
            assert "--checkpoint_version 2 --l1_penalty 0.0 --max_steps 50000 --learning_rate 0.01" in out
