"""The authors' six released CIFAR models: FLOPs/params as the README says, conversion, evaluation."""

import pytest
import torch

from dsp_torch.eval import evaluate_callable
from dsp_torch.eval import main as eval_main
from dsp_torch.flops import main as flops_main
from dsp_torch.flops import reductions
from dsp_torch.released import convert_released
from shared.data import CIFAR_MEAN, CIFAR_STD, load_cifar
from shared.errors import UserError

pytestmark = [pytest.mark.torch, pytest.mark.realdata]

# README table (P.FLOPS, P.PARAMS) of each released file. The accuracy of each file on the whole
# 932-image subset (listed in the data folder's README: 92.17 % for ResNet-20 g=4) is checked for one
# file through `dsp_torch.eval` below; the per-model test runs the first ACC_IMAGES images only.
README = {
    (20, 4): (63.57, 50.45),
    (20, 3): (62.43, 49.15),
    (20, 2): (61.23, 48.35),
    (56, 4): (65.11, 56.30),
    (56, 3): (64.14, 55.01),
    (56, 2): (63.26, 56.24),
}
SAME_IMAGES = 32  # ours == the authors' TorchScript: any conversion mistake shows on every image
ACC_IMAGES = 200
# The released files score 92.2-95.2 % on the whole subset, so about 93 % on 200 images (standard
# error 1.8 points): 85 % is more than 4 standard errors below. A wrong load (BN statistics or a
# group's channels misplaced, the wrong normalisation) costs tens of points, a random model is at 10 %.
ACC_BOUND = 85.0


def _path(root, depth, g):
    p = root / "dsp" / f"resnet{depth}_g{g}.pt"
    if not p.is_file():
        pytest.skip(f"{p} not found")
    return p


@pytest.fixture(scope="module")
def test_images(cifar_dir):
    test = load_cifar(cifar_dir, "cifar10", "test")
    n = max(SAME_IMAGES, ACC_IMAGES)
    x = torch.from_numpy(test.images[:n]).permute(0, 3, 1, 2).float() / 255
    x = (x - torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1)) / torch.tensor(CIFAR_STD).view(1, 3, 1, 1)
    return x, torch.from_numpy(test.labels[:n])


@pytest.mark.parametrize("depth,g", sorted(README))
def test_released_model(checkpoint_root, test_images, depth, g):
    path = _path(checkpoint_root, depth, g)
    conv = convert_released(path)
    assert conv.arch == {"family": "cifar", "depth": depth, "num_classes": 10} and conv.groups <= g
    r = reductions(conv.model, conv.arch)
    fl, pa = README[(depth, g)]
    assert round(r["dsp_flops_reduction_pct"], 2) == fl and round(r["dsp_params_reduction_pct"], 2) == pa
    assert r["whole_flops_reduction_pct"] < fl and r["whole_params_reduction_pct"] < pa  # 0.4-1.1 points lower
    x, y = test_images
    with torch.inference_mode():
        ours = conv.model.eval()(x[:ACC_IMAGES])
        theirs = conv.script(x[:SAME_IMAGES])
    assert (ours[:SAME_IMAGES] - theirs).abs().max().item() < 1e-4
    assert 100 * (ours.argmax(1) == y[:ACC_IMAGES]).float().mean().item() > ACC_BOUND


def test_eval_and_flops_commands(checkpoint_root, cifar_dir, tmp_path, capsys):
    path = _path(checkpoint_root, 20, 4)
    assert flops_main(["--ckpt", str(path)]) == 0
    out = capsys.readouterr().out
    assert "P.FLOPS 63.57 %" in out and "P.PARAMS 50.45 %" in out and "FLOPs -62.47 %" in out
    assert (
        eval_main(["--ckpt", str(path), "--data-dir", str(cifar_dir), "--check-script", "--records", str(tmp_path)])
        == 0
    )
    out = capsys.readouterr().out
    assert "top-1 92.17 % on 932 test images" in out and "TorchScript on the same images: top-1 92.17 %" in out
    from shared.results.records import iter_records

    [(_, rec)] = iter_records([tmp_path])
    assert rec["kind"] == "released-model" and rec["row"] == "cifar10/resnet20/g4"
    assert rec["metrics"]["flops_reduction_pct"] == pytest.approx(63.5656, abs=1e-3)


def test_not_a_packed_model(tmp_path):
    scripted = torch.jit.script(torch.nn.Linear(2, 2))
    scripted.save(str(tmp_path / "lin.pt"))
    with pytest.raises(UserError, match="not a packed DSP CIFAR ResNet"):
        convert_released(tmp_path / "lin.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a zip")
    with pytest.raises(UserError, match="not a loadable TorchScript"):
        convert_released(tmp_path / "junk.pt")


def test_evaluate_callable_counts(cifar_dir):
    acc, n = evaluate_callable(lambda x: torch.zeros(x.shape[0], 10).index_fill_(1, torch.tensor([3]), 1.0), cifar_dir)
    labels = load_cifar(cifar_dir, "cifar10", "test").labels
    assert n == 932 and acc == pytest.approx(100 * (labels == 3).mean())


def test_convert_command_writes_our_pruned_format(checkpoint_root, tmp_path, capsys):
    from dsp_torch.checkpoints import load_checkpoint, model_from_checkpoint
    from dsp_torch.released import main as convert_main

    path = _path(checkpoint_root, 20, 2)
    out = tmp_path / "resnet20_g2.pkl"
    assert convert_main(["--ckpt", str(path), "--save", str(out)]) == 0
    ckpt = load_checkpoint(out)
    assert ckpt["stage"] == "pruned" and ckpt["groups"] == 2 and ckpt["arch"]["depth"] == 20
    model = model_from_checkpoint(ckpt, out).eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.inference_mode():
        assert (model(x) - convert_released(path).script(x)).abs().max().item() < 1e-4
    assert convert_main(["--ckpt", str(path), "--save", str(out)]) == 2  # never overwrites
