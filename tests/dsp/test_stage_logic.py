"""The stages' epoch logic (research notes 1.6, 2.2-2.4) with scripted test accuracies: the pretraining
warm-up and steps, group learning's best epoch from index 9 on, and fine-tuning's cycles (reload the
best, re-prune 0.1 points above its FLOPs, ties accepted). Each stage runs one tiny step per epoch."""

import json

import pytest
import torch

from dsp_torch import cifar_dsp, cifar_finetune, cifar_pretrain
from dsp_torch.checkpoints import load_checkpoint
from dsp_torch.dsp_module import PruneWrapper
from dsp_torch.runner import StageRunner

pytestmark = pytest.mark.torch

COMMON = ["-l", "20", "--dataset", "digits", "--train-limit", "16", "-b", "16"]


def _script_accuracies(monkeypatch, accuracies):
    """StageRunner.evaluate returns these test accuracies, one per epoch."""
    it = iter(accuracies)
    monkeypatch.setattr(StageRunner, "evaluate", lambda self, model: (next(it), 1.0))


def _metrics(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_pretrain_warm_up_and_steps(tmp_path, monkeypatch):
    """lr/4 for epochs 0-1, lr from epoch 2, x0.1 at epochs//2 and 3 epochs//4 (8 epochs: 4 and 6)."""
    _script_accuracies(monkeypatch, [10.0] * 8)
    argv = COMMON + ["--epochs", "8", "--lr", "0.4", "--save-dir", str(tmp_path)]
    args = cifar_pretrain.build_parser().parse_args(argv)
    assert cifar_pretrain.run(args) == 0
    lrs = [row["lr"] for row in _metrics(tmp_path / "resnet20.pkl.metrics.jsonl")]
    assert lrs == pytest.approx([0.1, 0.1, 0.4, 0.4, 0.04, 0.04, 0.004, 0.004])


@pytest.fixture(scope="module")
def group_learned(tmp_path_factory):
    """A pretrained and a group-learned ResNet-20 (-g 2), one step each."""
    folder = tmp_path_factory.mktemp("stages")
    with pytest.MonkeyPatch.context() as mp:
        _script_accuracies(mp, [10.0] * 2)
        for module, extra in ((cifar_pretrain, []), (cifar_dsp, ["-g", "2"])):
            args = module.build_parser().parse_args(COMMON + extra + ["--epochs", "1", "--save-dir", str(folder)])
            assert module.run(args) == 0
    return folder


def test_group_learning_keeps_the_best_epoch_from_index_9(tmp_path, group_learned):
    """Epochs 0-8 score higher but do not count; epoch 9 (70) beats epoch 10 (60)."""
    with pytest.MonkeyPatch.context() as mp:
        _script_accuracies(mp, [90.0] * 9 + [70.0, 60.0])
        argv = COMMON + ["-g", "2", "--epochs", "11", "--save-dir", str(tmp_path)]
        args = cifar_dsp.build_parser().parse_args(argv + ["--ckpt", str(group_learned / "resnet20.pkl")])
        assert cifar_dsp.run(args) == 0
    assert load_checkpoint(tmp_path / "resnet20_G0g2.pkl")["best_acc"] == 70.0


def test_finetune_cycles_reprune_above_the_best_and_accept_ties(tmp_path, monkeypatch, group_learned):
    """3 cycles of 2 epochs, test accuracies 60 50 | 60 55 | 58 59. Cycle 1 keeps epoch 0 (FLOPs
    50.2 %); its end reloads it and prunes to 0.502 + 0.001. Epoch 2 ties 60 and is kept (ties
    accepted) at 50.5 %; cycle 2's end reloads epoch 2's weights and prunes to 0.505 + 0.001."""
    calls = []

    def fake_initialize(self, rate, n_iter=10):
        calls.append((rate, {k: v.clone() for k, v in self.model.state_dict().items()}))
        return round(100 * rate + 0.2, 6), 40.0  # lands 0.2 points above the target

    monkeypatch.setattr(PruneWrapper, "initialize", fake_initialize)
    _script_accuracies(monkeypatch, [60.0, 50.0, 60.0, 55.0, 58.0, 59.0])
    argv = COMMON + ["-g", "2", "-p", "0.5", "-c", "3", "--epochs", "6", "--cascade-passes", "1"]
    args = cifar_finetune.build_parser().parse_args(argv + ["--save-dir", str(group_learned)])
    assert cifar_finetune.run(args) == 0
    assert [rate for rate, _ in calls] == pytest.approx([0.5, 0.503, 0.506])
    final = load_checkpoint(group_learned / "resnet20_P0g2c0.50.pkl")
    assert final["best_acc"] == 60.0 and final["pflops"] == pytest.approx(50.5)
    reloaded = calls[2][1]  # the weights cycle 2's end re-pruned: epoch 2's, saved as the best
    for k, v in final["state_dict"].items():
        torch.testing.assert_close(reloaded[k], v, rtol=0, atol=0)
    assert any(not torch.equal(calls[1][1][k], v) for k, v in final["state_dict"].items() if k.endswith("weight"))
