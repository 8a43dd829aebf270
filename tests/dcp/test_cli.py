"""Bad input through the entry point: one clear line, exit status 2, nothing finished overwritten."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.tf

tf = pytest.importorskip("tensorflow")

from dcp_tf import checkpoints  # noqa: E402
from dcp_tf import resnet_at_cifar10_run as entry  # noqa: E402
from dcp_tf.models import ResNet  # noqa: E402


def fails(capsys, *flags) -> str:
    assert entry.main(list(flags)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    return err


@pytest.mark.parametrize("ratio", ["1.0", "-0.1", "nan", "inf"])
def test_prune_ratio_outside_zero_one(capsys, ratio):
    err = fails(capsys, "--learner", "dis-chn-pruned", "--dcp_prune_ratio", ratio)
    assert "--dcp_prune_ratio" in err


def test_stage_counts(capsys):
    assert "--dcp_nb_stages must be >= 1" in fails(capsys, "--learner", "dis-chn-pruned", "--dcp_nb_stages", "0")
    err = fails(capsys, "--learner", "dis-chn-pruned", "--dcp_nb_stages", "10", "--dataset_name", "digits")
    assert "22 convs" in err and "allowed values" in err


def test_missing_data_folder(capsys, tmp_path):
    err = fails(capsys, "--learner", "full-prec", "--data_dir", str(tmp_path / "nowhere"))
    assert "does not exist" in err and "nowhere" in err


def test_missing_pretrained_model_says_how_to_train_one(capsys, tmp_path):
    err = fails(capsys, "--learner", "dis-chn-pruned", "--dataset_name", "digits",
                "--save_path", str(tmp_path / "models/model.ckpt"))  # fmt: skip
    assert "--learner full-prec" in err and "no pre-trained model" in err


def test_pretrained_model_of_another_network(capsys, tmp_path):
    folder = tmp_path / "models"
    checkpoints.save_model(folder, ResNet("pocketflow", "cifar10", 8), {})
    err = fails(capsys, "--learner", "dis-chn-pruned", "--dataset_name", "digits", "--resnet_size", "20",
                "--save_path", str(folder / "model.ckpt"))  # fmt: skip
    assert "'size': 8" in err and "'size': 20" in err
    # same arch.json, other shapes (PocketFlow #19: names or shapes that do not match)
    (folder / "arch.json").write_text(json.dumps({"family": "pocketflow", "dataset": "cifar10", "size": 20}))
    err = fails(capsys, "--learner", "dis-chn-pruned", "--dataset_name", "digits", "--resnet_size", "20",
                "--save_path", str(folder / "model.ckpt"))  # fmt: skip
    assert "does not match" in err


def test_finished_full_prec_model_is_not_overwritten(capsys, tmp_path):
    folder = tmp_path / "models"
    checkpoints.save_model(folder, ResNet("pocketflow", "cifar10", 8), {"learner": "full-prec"})
    before = sorted(p.name for p in folder.iterdir())
    err = fails(capsys, "--learner", "full-prec", "--dataset_name", "digits", "--resnet_size", "8",
                "--save_path", str(folder / "model.ckpt"))  # fmt: skip
    assert "never overwritten" in err
    assert sorted(p.name for p in folder.iterdir()) == before
