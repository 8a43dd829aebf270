"""The whole DSP pipeline, small, on the real CIFAR-10 subset: pretrain, group learning, prune at 0.5,
fine-tune, pack. Checks the FLOPs target, accuracy above chance, packed == masked, run records."""

import pytest
import torch

from dsp_torch import cifar_dsp, cifar_finetune, cifar_pretrain
from dsp_torch.checkpoints import load_checkpoint, model_from_checkpoint
from dsp_torch.eval import main as eval_main
from dsp_torch.pack_model import main as pack_main
from shared.results.records import iter_records

pytestmark = [pytest.mark.torch, pytest.mark.realdata, pytest.mark.slow]


def test_pipeline_on_cifar10_subset(cifar_dir, tmp_path, capsys):
    common = ["-l", "20", "--data-dir", str(cifar_dir), "--save-dir", str(tmp_path), "-b", "32"]
    # Two epochs over 2,048 images at batch 32; --lr 0.2 makes the authors' warm-up lr (lr / 4) 0.05.
    # Pretraining and group learning are evaluated on 500 test images (their accuracy is not checked);
    # fine-tuning on all 932, as the packed model is.
    few = ["--test-limit", "500"]
    assert cifar_pretrain.main(common + few + ["--train-limit", "2048", "--epochs", "2", "--lr", "0.2"]) == 0
    common += ["--train-limit", "1024"]
    assert cifar_dsp.main(common + few + ["-g", "4", "-r", "2e-3", "--epochs", "1"]) == 0
    assert (
        cifar_finetune.main(common + ["-g", "4", "-p", "0.5", "--epochs", "1", "-c", "1", "--cascade-passes", "1"]) == 0
    )
    pruned = tmp_path / "resnet20_P0g4c0.50.pkl"
    ckpt = load_checkpoint(pruned)
    assert ckpt["stage"] == "pruned" and ckpt["groups"] == 4
    assert abs(ckpt["pflops"] - 50.0) <= 1.0  # within 1 point of the FLOPs target
    assert ckpt["best_acc"] > 20.0  # twice chance (10 %), about ten standard errors above it at n = 932
    capsys.readouterr()
    assert pack_main(["--ckpt", str(pruned), "--save", str(tmp_path / "packed.pt"), "--data-dir", str(cifar_dir)]) == 0
    out = capsys.readouterr().out
    diff = float(out.split("max |packed - masked| = ")[1].split()[0])
    assert diff < 1e-4
    assert f"test accuracy of the packed model: {ckpt['best_acc']:.2f} %" in out
    model = model_from_checkpoint(ckpt, pruned).eval()
    packed = torch.jit.load(str(tmp_path / "packed.pt"))
    x = torch.randn(16, 3, 32, 32)
    with torch.inference_mode():
        assert (packed(x) - model(x)).abs().max().item() < 1e-4
    assert eval_main(["--ckpt", str(tmp_path / "packed.pt"), "--data-dir", str(cifar_dir)]) == 0
    records = {r["variant"]["stage"]: r for _, r in iter_records([tmp_path / "records"])}
    assert set(records) == {"pretrain", "dsp", "finetune"}
    fin = records["finetune"]
    assert fin["kind"] == "smoke" and fin["row"] == "cifar10/resnet20/g4" and fin["convention"] == "dsp-prunable"
    assert fin["metrics"]["flops_reduction_pct"] == pytest.approx(ckpt["pflops"], abs=1e-6)
    assert records["dsp"]["variant"]["reg_scale"] == "activation"
    assert records["dsp"]["variant"]["second_order"] == "released"
