"""Failure modes a user would otherwise meet without a word: a pruning search that ends far from its
target (the released empty-group quirk), training on the digits demo set by accident, `-d` not
choosing the GPU, `pack_model -g` ignored."""

import pytest
import torch
from torch import nn

from dsp_torch import cifar_pretrain, pack_model
from dsp_torch.dsp_module import PruneWrapper, prunable_convs
from dsp_torch.flags import stage_device
from shared.errors import UserError

pytestmark = pytest.mark.torch

SHARES = torch.tensor([0.16, 0.24, 0.28, 0.32])  # each input channel's share of its group's energy


def _equal_share_net() -> nn.Module:
    """Stem + two prunable 4 -> 4 convs whose input channels hold the energy shares SHARES."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1, bias=False),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding=1, bias=False),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding=1, bias=False),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 10),
    )
    with torch.no_grad():
        for _, conv in prunable_convs(net):  # energy of channel c = 4 filters x 9 taps x w_c^2 = share_c
            conv.weight.copy_((SHARES / 36).sqrt().view(1, 4, 1, 1).expand(4, 4, 3, 3))
    return net


def _pruner(empty_group):
    return PruneWrapper(
        _equal_share_net(),
        1,
        -1,
        empty_group=empty_group,
        cascade_passes=1,
        cascade_batch=4,
        generator=torch.Generator().manual_seed(0),
        verbose=False,
    )


def test_released_empty_group_quirk_stops_instead_of_returning_a_fully_pruned_model():
    """At the first trial beta (0.15) no channel's cumulative share (0.16 first) is under beta: the
    released rule prunes every channel (100 %), so beta is lowered, and lowered again: the search
    ends with everything pruned for a target of 50 %. 'keep' keeps such groups (0 % at beta 0.15),
    so beta rises and pruned FLOPs grow with it, in steps (34 % below beta 0.4, 62.5 % above): a
    target of 35 % is met within 5 points; 50 % falls between two steps and is reported as such."""
    with pytest.raises(UserError, match="--empty-group keep") as err:
        _pruner("prune").initialize(0.5)
    assert "ended at 100.00 % of the prunable-conv FLOPs" in str(err.value)
    pflops, _ = _pruner("keep").initialize(0.35)
    assert abs(pflops - 35) <= 5
    with pytest.raises(UserError, match="jump in steps") as err:
        _pruner("keep").initialize(0.5)
    assert "--empty-group keep" not in str(err.value)


def test_authors_command_without_data_folder_stops(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("PRUNING_DATA_DIR", raising=False)
    assert cifar_pretrain.main(["-l", "20", "--save-dir", str(tmp_path), "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert "pass --data-dir DIR" in err and "--dataset digits" in err
    assert not any(tmp_path.iterdir())


def test_gpu_index_selects_the_device(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert stage_device("auto", "1") == "cuda:1"
    assert stage_device("auto", "0") == "cuda:0"
    assert stage_device("cpu", "1") == "cpu"  # --device-type wins
    with pytest.raises(UserError, match="has 2 GPU"):
        stage_device("auto", "2")
    with pytest.raises(UserError, match="GPU index"):
        stage_device("auto", "x")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert stage_device("auto", "3") == "cpu"  # a CPU machine: -d only names the files


def test_pack_model_checks_the_group_count(tmp_path, capsys):
    from dsp_torch.checkpoints import save_checkpoint
    from dsp_torch.dsp_module import attach_prune_buffers
    from dsp_torch.models import cifar_resnet

    model = cifar_resnet(20)
    for conv in attach_prune_buffers(model, 4):
        conv.mask[:, ::2] = 0
    ckpt = tmp_path / "resnet20_P0g4c0.50.pkl"
    arch = {"family": "cifar", "depth": 20, "num_classes": 10}
    save_checkpoint(ckpt, stage="pruned", model=model, arch=arch, groups=4, best_acc=50.0)
    assert pack_model.main(["--ckpt", str(ckpt), "--save", str(tmp_path / "p.pt"), "-g", "2"]) == 2
    assert "4 groups, but -g 2 was given" in capsys.readouterr().err
    assert not (tmp_path / "p.pt").exists()
