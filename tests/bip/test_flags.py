"""Every flag the README adds to the original's train.py runs end to end, and does what it says:
--bip-variant paper (+ --lower-lr/--upper-lr), --hydra-original, --imp-rate, --precision bf16,
--accum-steps, --deterministic, --save-dense, --freeze-bn, --channels-last and --compile."""

import json

import pytest
import torch

from bip_torch import layers as L
from bip_torch.args import parse_args
from bip_torch.models import build
from bip_torch.train import run
from shared.results.records import iter_records
from tests.bip.conftest import TINY_ARGS

pytestmark = pytest.mark.torch
TINY = [*TINY_ARGS, "--epochs", "1"]  # as the `pretrained` fixture (conftest), which is the plain reference run


def _run(argv):
    return run(parse_args(argv))


def _ckpt(res, name="checkpoint.pth.tar"):
    return torch.load(res["run_dir"] / "checkpoint" / name, weights_only=True)


def _loss(run_dir):
    return json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[0])["train_loss"]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("flags")


@pytest.fixture(scope="module")
def dense(pretrained):
    return pretrained[1].parent.parent, pretrained[1]  # (run folder, checkpoint)


def _prune(root, dense, cfg, name, *extra, k="0.5"):
    return _run(["--configs", f"configs/CIFAR10/{cfg}.yml", "--k", k, "--source-net", str(dense[1]),
                 "--exp-name", name, "--result-dir", str(root), "--records", str(root / "rec" / name), *TINY,
                 *extra])  # fmt: skip


def test_save_dense_freeze_bn_and_deterministic(root, dense):
    cudnn = (torch.backends.cudnn.enabled, torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic)
    try:
        res = _prune(root, dense, "bip", "sd", "--save-dense", "--freeze-bn", "--deterministic")
        assert torch.backends.cudnn.enabled is False and torch.backends.cudnn.deterministic is True
    finally:
        torch.backends.cudnn.enabled, torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = cudnn
    sd = _ckpt(res, "checkpoint_dense.pth.tar")["state_dict"]
    assert not any(k.endswith("popup_scores") for k in sd)
    names = [n for n, _ in L.masked_modules(build("resnet20s", "unstructured", 10))]
    total = sum(sd[f"{n}.weight"].numel() for n in names)
    zeros = sum(int((sd[f"{n}.weight"] == 0).sum()) for n in names)
    assert zeros == int(0.5 * total)  # the global mask, applied: exactly the pruned share is zero
    source = torch.load(dense[1], weights_only=True)["state_dict"]
    trained = _ckpt(res)["state_dict"]
    bn = [k for k in source if k.startswith("bn1.") or ".bn" in k]
    affine = [k for k in bn if k.endswith((".weight", ".bias"))]
    assert affine and all(torch.equal(source[k], trained[k]) for k in affine)  # --freeze-bn
    assert any(not torch.equal(source[k], trained[k]) for k in bn if k.endswith("running_mean"))  # stats move


def test_paper_variant_copies_the_scores_and_uses_its_own_rates(root, dense):
    res = _prune(root, dense, "bip", "paper", "--bip-variant", "paper", "--lower-lr", "0.02", "--upper-lr", "0.3")
    ck = _ckpt(res)
    assert ck["variant"]["bip_variant"] == "paper"
    sd = ck["state_dict"]
    assert not torch.equal(sd["conv1.weight"], sd["conv1.popup_scores"])  # scores are a copy, not the weights
    (rec,) = [r for _, r in iter_records([root / "rec" / "paper"])]
    assert rec["variant"]["bip_variant"] == "paper" and rec["config"]["upper_lr"] == 0.3


def test_hydra_original_keeps_k_per_layer(root, dense):
    res = _prune(root, dense, "hydra", "ho", "--hydra-original", "--k", "0.3")
    ck = _ckpt(res)
    assert ck["variant"]["hydra"] == "original"
    model = build("resnet20s", "unstructured", 10, 0.3)
    model._forward_pre_hooks.clear()  # layer-wise masks, as --hydra-original builds them
    model.load_state_dict(ck["state_dict"])
    for name, layer in L.sparsity_report(model)["layers"].items():
        assert layer["kept"] == layer["total"] - int(0.7 * layer["total"]), name


def test_imp_rate_sets_the_rounds(root, dense):
    _run(["--configs", "configs/CIFAR10/finetune.yml", "--baseline", "imp", "--imp-rate", "0.5", "--k", "0.25",
          "--source-net", str(dense[1]), "--exp-name", "imp", "--result-dir", str(root), "--records",
          str(root / "rec" / "imp"), *TINY])  # fmt: skip
    recs = sorted((r for _, r in iter_records([root / "rec" / "imp"])), key=lambda r: r["metrics"]["imp_round"])
    assert [r["variant"]["k"] for r in recs] == [0.5, 0.25]  # 50 % of what is left per round


@pytest.mark.parametrize("flags,tol", [(["--precision", "bf16"], 0.05), (["--accum-steps", "2"], 0.05),
                                       (["--channels-last"], 1e-4)])  # fmt: skip
def test_step_flags_change_the_computation_only_within_their_tolerance(root, dense, flags, tol):
    """The first training step's loss against the plain fp32 run: close, and (bf16: rounding; two micro-
    batches: BN over 8 images) not identical where the flag changes the arithmetic."""
    res = _run(["--configs", "configs/CIFAR10/pretrain.yml", "--exp-name", "step" + "".join(flags), "--result-dir",
                str(root), *TINY, *flags])  # fmt: skip
    ref, got = _loss(dense[0]), _loss(res["run_dir"])
    assert abs(got - ref) < tol * abs(ref)
    if flags[0] != "--channels-last":
        assert got != ref
