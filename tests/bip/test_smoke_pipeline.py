"""The BiP pipeline, small, on the real CIFAR-10 subset: pretrain resnet20s briefly, prune with bilevel
(BiP) and base (HYDRA) in the three layer types, fine-tune one; exact kept counts, accuracy well above
chance, slimmed structured models equal to the masked ones, run records."""

import pytest
import torch

from bip_torch import layers as L
from bip_torch.args import parse_args
from bip_torch.data import CIFAR10_MEAN, CIFAR10_STD
from bip_torch.models import build
from bip_torch.slim import slim
from bip_torch.train import run
from shared.data import load_cifar
from shared.results.records import iter_records

pytestmark = [pytest.mark.torch, pytest.mark.realdata, pytest.mark.slow]
K = 0.5


def _kept_exactly(model, layer_type):
    rep = L.sparsity_report(model)
    if layer_type == "unstructured":
        return rep["kept"] == rep["total"] - int((1 - K) * rep["total"])
    for name, layer in rep["layers"].items():
        mod = model.get_submodule(name)
        if isinstance(mod, torch.nn.Linear):
            ok = layer["kept"] == layer["total"]
        elif layer_type == "filter":
            ok = layer["kept"] == (mod.out_channels - int((1 - K) * mod.out_channels)) * mod.weight[0].numel()
        else:
            ok = layer["kept"] == (mod.in_channels - int((1 - K) * mod.in_channels)) * mod.weight[:, 0].numel()
        if not ok:
            return False
    return True


def test_pipeline_on_cifar10_subset(cifar_dir, tmp_path):
    data = ["--dataset", "CIFAR10", "--data-dir", str(cifar_dir), "--test-limit", "300", "--result-dir", str(tmp_path)]
    records = ["--records", str(tmp_path / "records")]
    # one epoch at a constant lr (with --epochs 1 the original's cosine, (epoch - 1) offset, gives lr 0)
    pre = run(parse_args(["--configs", "configs/CIFAR10/pretrain.yml", "--epochs", "1", "--lr-schedule",
                          "constant", "--lr", "0.01", "--train-limit", "1536", "--batch-size", "32",
                          "--exp-name", "pre", *data, *records]))  # fmt: skip
    assert pre["final"] > 18.0  # chance is 10 %; 300 test images: one standard error is about 1.7 points
    src = pre["run_dir"] / "checkpoint" / "checkpoint.pth.tar"
    small = ["--train-limit", "64", "--batch-size", "32", "--epochs", "1", "--lr-schedule", "constant",
             "--lr", "0.01", "--k", str(K), "--source-net", str(src)]  # fmt: skip
    pruned = {}
    for cfg in ("bip", "hydra"):
        for lt in ("unstructured", "filter", "channel"):
            # accuracy is checked on BiP unstructured only
            fewer = [] if (cfg, lt) == ("bip", "unstructured") else ["--test-limit", "100"]
            res = run(parse_args(["--configs", f"configs/CIFAR10/{cfg}.yml", "--layer-type", lt,
                                  "--exp-name", f"{cfg}-{lt}", *small, *data, *fewer, *records]))  # fmt: skip
            path = res["run_dir"] / "checkpoint" / "checkpoint.pth.tar"
            ck = torch.load(path, weights_only=True)
            model = build("resnet20s", lt, 10, K)
            model.load_state_dict(ck["state_dict"])
            assert _kept_exactly(model, lt), (cfg, lt)
            pruned[cfg, lt] = (res, path, model)
    # BiP prunes without retraining: its pruned nets stay well above chance
    assert pruned["bip", "unstructured"][0]["final"] > 18.0
    # fine-tune the BiP unstructured net with the same k and layer type
    ft = run(parse_args(["--configs", "configs/CIFAR10/finetune.yml", "--layer-type", "unstructured", "--k", str(K),
                         "--source-net", str(pruned["bip", "unstructured"][1]), "--train-limit", "256", "--batch-size",
                         "32", "--epochs", "1", "--lr", "0.01", "--lr-schedule", "constant", "--exp-name", "ft",
                         *data, *records]))  # fmt: skip
    assert ft["final"] > 18.0
    # slimmed structured models equal the masked ones on real test images
    test = load_cifar(cifar_dir, "cifar10", "test")
    x = torch.as_tensor(test.images[:32]).permute(0, 3, 1, 2).float() / 255
    x = (x - torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1)) / torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)
    for key in (("bip", "filter"), ("bip", "channel"), ("hydra", "filter")):
        model = pruned[key][2].eval()
        with torch.no_grad():
            ref = model(x)
            assert (slim(model)(x) - ref).abs().max().item() < 1e-4 * max(1.0, ref.abs().max().item()), key
    recs = [r for _, r in iter_records([tmp_path / "records"])]
    assert len(recs) == 8 and all(r["kind"] == "smoke" for r in recs)
    variants = {(r["variant"]["method"], r["variant"]["layer_type"]) for r in recs}
    assert (
        ("bip", "channel") in variants and ("hydra", "filter") in variants and ("finetune", "unstructured") in variants
    )
    bip = next(r for r in recs if r["variant"]["method"] == "bip")
    assert bip["variant"]["bip_variant"] == "code" and bip["convention"] == "weights-only"
