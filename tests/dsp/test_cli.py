"""Bad input to the DSP commands: one clear line on stderr, exit status 2, nothing overwritten."""

import pytest
import torch

from dsp_torch import cifar_dsp, cifar_finetune, cifar_pretrain, pack_model
from dsp_torch.checkpoints import save_checkpoint
from dsp_torch.models import cifar_resnet

pytestmark = pytest.mark.torch


def _error(capsys, main, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    return err


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ckpt")
    save_checkpoint(
        folder / "resnet20.pkl",
        stage="pretrained",
        model=cifar_resnet(20),
        arch={"family": "cifar", "depth": 20, "num_classes": 10},
        best_acc=10.0,
    )
    return folder


@pytest.mark.parametrize(
    "flag,message",
    [
        (["-g", "0"], "-g/--groups must be in"),
        (["-g", "17"], "-g/--groups must be between 1 and 16"),
        (["-r", "-1"], "-r/--regularize must be in"),
        (["-l", "21"], "-l/--layers must be one of"),
        (["--epochs", "0"], "--epochs must be in"),
    ],
)
def test_dsp_flags_out_of_range(capsys, pretrained, flag, message):
    assert message in _error(capsys, cifar_dsp.main, ["--save-dir", str(pretrained), "--dataset", "digits"] + flag)


@pytest.mark.parametrize("prune", ["0", "1", "1.5", "-0.2"])
def test_finetune_rate_outside_0_1(capsys, pretrained, prune):
    err = _error(capsys, cifar_finetune.main, ["--save-dir", str(pretrained), "-p", prune])
    assert "-p/--prune must be in (0, 1)" in err


def test_checkpoint_of_another_depth(capsys, pretrained):
    err = _error(
        capsys,
        cifar_dsp.main,
        ["-l", "56", "--ckpt", str(pretrained / "resnet20.pkl"), "--save-dir", str(pretrained), "--dataset", "digits"],
    )
    assert "holds a ResNet-20, but -l 56 was given" in err


def test_wrong_stage_and_groups(capsys, pretrained):
    err = _error(
        capsys,
        cifar_finetune.main,
        ["--ckpt", str(pretrained / "resnet20.pkl"), "--save-dir", str(pretrained), "--dataset", "digits"],
    )
    assert "is a pretrained checkpoint; fine-tuning needs the group-learned one" in err


def test_torchscript_where_a_state_dict_is_expected(capsys, tmp_path):
    ts = tmp_path / "model.pt"
    torch.jit.script(torch.nn.Linear(2, 2)).save(str(ts))
    err = _error(capsys, cifar_dsp.main, ["--ckpt", str(ts), "--save-dir", str(tmp_path), "--dataset", "digits"])
    assert "is a TorchScript archive" in err


def test_truncated_checkpoint(capsys, pretrained, tmp_path):
    broken = tmp_path / "resnet20.pkl"
    broken.write_bytes((pretrained / "resnet20.pkl").read_bytes()[:5000])
    err = _error(capsys, cifar_dsp.main, ["--save-dir", str(tmp_path), "--dataset", "digits"])
    assert "cannot load pretrained checkpoint" in err


def test_missing_data_folder(capsys, tmp_path):
    err = _error(capsys, cifar_pretrain.main, ["--data-dir", str(tmp_path / "nope"), "--save-dir", str(tmp_path)])
    assert "does not exist" in err and "cifar-10-batches-py" in err


def test_foreign_files_are_kept(capsys, tmp_path):
    """A stage output that no run of this stage wrote is refused before any training (a finished stage
    rerun, with the same or other flags: tests/dsp/test_reliability.py)."""
    args = ["--dataset", "digits", "--train-limit", "32", "-b", "32", "--epochs", "1", "--save-dir", str(tmp_path)]
    (tmp_path / "resnet20.pkl").write_bytes(b"someone else's file")
    err = _error(capsys, cifar_pretrain.main, args)
    assert "exists but no run of this stage in" in err
    assert [p.name for p in tmp_path.iterdir()] == ["resnet20.pkl"]
    assert (tmp_path / "resnet20.pkl").read_bytes() == b"someone else's file"


def test_pack_a_dense_model_is_refused(capsys, pretrained, tmp_path):
    err = _error(
        capsys, pack_model.main, ["--ckpt", str(pretrained / "resnet20.pkl"), "--save", str(tmp_path / "p.pt")]
    )
    assert "is a dense" in err and not (tmp_path / "p.pt").exists()
