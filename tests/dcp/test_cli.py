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


@pytest.mark.slow
def test_distillation_accumulation_and_eval_end_to_end(capsys, tmp_path):
    """--enbl_dst and --accum_steps through a whole (tiny) run, then --exec_mode eval of its model."""
    common = ["--dataset_name", "digits", "--resnet_size", "8", "--batch_size", "8", "--summ_step", "0",
              "--save_path", str(tmp_path / "models/model.ckpt"), "--save_path_eval", str(tmp_path / "me/model.ckpt"),
              "--dcp_save_path", str(tmp_path / "dcp/model.ckpt"),
              "--dcp_save_path_eval", str(tmp_path / "dcp_eval/model.ckpt"),
              "--log_dir", str(tmp_path / "logs")]  # fmt: skip
    assert entry.main([*common, "--learner", "full-prec", "--nb_iters_train", "10"]) == 0
    capsys.readouterr()
    flags = ["--learner", "dis-chn-pruned", "--enbl_dst", "--accum_steps", "2", "--dcp_prune_ratio", "0.9375",
             "--dcp_nb_stages", "1", "--dcp_nb_iters_block", "1", "--dcp_nb_iters_layer", "0",
             "--nb_epochs_rat", "0.0005", "--dcp_save_every_picks", "0", "--no_export"]  # fmt: skip
    assert entry.main([*common, *flags]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["nonzero_in_pruned_slices"] == 0 and out["kept"]["stage3.block0.conv2"] == [4, 64]
    assert entry.main([*common, *flags, "--exec_mode", "eval"]) == 0
    ev = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert ev["top1"] == pytest.approx(out["top1"]) and ev["pr_msk"] == pytest.approx(out["pr_msk"])
    assert entry.main([*common, *flags]) == 0  # finished: nothing redone, nothing overwritten
    assert "already in" in capsys.readouterr().err
