"""On the real CIFAR-10 subset and the authors' ResNet-56: its accuracy and counts, and the whole
pipeline in miniature (warm-up, search to a loose target, memory bank, slimming, both fine-tuning
variants, records), with the slimmed network's outputs equal to the masked network's."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytestmark = [pytest.mark.tf, pytest.mark.realdata]

tf = pytest.importorskip("tensorflow")

from ekg_tf2 import data, params, pruning, test, train, train_cifar  # noqa: E402
from ekg_tf2.flops import count  # noqa: E402
from shared.results import iter_records  # noqa: E402


@pytest.fixture(scope="module")
def res56(checkpoint_root):
    path = checkpoint_root / "ekg" / "res56_cifar10.pkl"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    return path


def test_authors_resnet56_accuracy_and_counts(res56, cifar_dir, tmp_path):
    args = test.build_parser().parse_args(
        ["--trained_param", str(res56), "--data_dir", str(cifar_dir), "--records", str(tmp_path), "--test_limit", "256"]
    )
    out = test.run(args, log=lambda s: None)
    assert out["params"] == 860_026 and out["flops"] == 126_837_376  # the code's counter, golden
    # all 932 test images: 93.56 % with batch statistics (test.py), 93.35 % with moving averages
    # (train.py); the poster's baseline is 93.84 % on the full test set. Here the first 256 (one batch;
    # binomial s.e. 1.5 points): a wrong padding, normalisation or shortcut drops it far below 90 %
    assert 90.0 < out["batch-stats"]["top1"] < 97.5 and 90.0 < out["moving-average"]["top1"] < 97.5
    recs = [r for _, r in iter_records([tmp_path])]
    assert {r["variant"]["bn_eval"] for r in recs} == {"batch-stats", "moving-average"}
    assert all(r["row"] == "ablation/cifar10/resnet56/baseline" and r["kind"] == "released-model" for r in recs)


@pytest.mark.timeout(1800)  # ~2 CPU-minutes; allow for a busy machine
def test_smoke_pipeline_from_the_authors_resnet56(res56, cifar_dir, tmp_path):
    run = tmp_path / "run"
    common = ["--arch", "ResNet-56", "--dataset", "CIFAR10", "--data_dir", str(cifar_dir), "--xla", "off"]
    small = ["--val_per_class", "2", "--subset_per_class", "2", "--search_batch_size", "20"]
    small += ["--train_limit", "40", "--test_limit", "20", "--records", str(tmp_path / "rec")]
    args = train_cifar.build_parser().parse_args(
        common
        + small
        + ["--search_target_rate", "0.95", "--train_path", str(run), "--trained_param", str(res56)]
        + ["--train_epoch", "1", "--max_steps", "1", "--batch_size", "16"]
    )
    lines = []
    out = train_cifar.run(args, log=lines.append)
    s = out["search"]
    # the target is FLOPs KEPT, by the code's counter, landed at or just under (fine_search)
    assert 0.94 < s["flops_rate"] <= 0.95
    search = s["search"]
    assert count(search.model) == count(s["slimmed"])
    assert s["iterations"] == len(search.history) - 1 >= 2
    # nested sub-networks: every history entry keeps a subset of the previous one's channels
    for prev, cur in zip(search.history, search.history[1:]):
        for g in prev["kept"]:
            keep_prev = set(np.flatnonzero(prev["orders"][g] < prev["kept"][g]))
            keep_cur = set(np.flatnonzero(cur["orders"][g] < cur["kept"][g]))
            assert keep_cur <= keep_prev, g
    # memory bank: teachers from the interim networks (the final excluded), teacher 0 the lowest loss
    interim = [h["loss"] for h in search.history[:-1]]
    assert s["teachers"][0] == int(np.argmin(interim)) and max(s["teachers"]) < len(search.history) - 1
    bank = np.load(run / "CIFAR10_knowledge.npy", mmap_mode="r")
    assert bank.shape == (40, 10, min(5, len(interim)))
    # the slimmed network, saved in the original format and reloaded, computes what the masked one does
    slim = params.load_model("ResNet-56", "CIFAR10", run / "slimmed_params.pkl")
    test_split = data.limited(data.load_split("CIFAR10", "test", str(cifar_dir)), 20)
    x = data.normalize(test_split.images, "CIFAR10")
    for training in (True, False):
        masked = search.model(x, training=training, update=False).numpy()
        np.testing.assert_allclose(slim(x, training=training, update=False).numpy(), masked, rtol=1e-4, atol=1e-4)
    assert sum(slim.widths.values()) < sum(search.model.widths.values())
    assert (run / "trained_params.pkl").is_file() and out["finetune"]["knowledge"] == "none"
    # the full method from the same search: --Knowledge fine-tuning with the memory bank
    kd = train.build_parser().parse_args(
        common
        + ["--train_limit", "40", "--test_limit", "20", "--records", str(tmp_path / "rec"), "--Knowledge"]
        + ["--trained_param", str(run / "slimmed_params.pkl"), "--train_path", str(tmp_path / "kd")]
        + ["--train_epoch", "1", "--max_steps", "1", "--batch_size", "16"]
    )
    assert train.run(kd, log=lines.append)["knowledge"] == "ensemble"
    recs = {r["variant"]["finetune_knowledge"]: r for _, r in iter_records([tmp_path / "rec"])}
    assert recs["none"]["row"] == "ablation/cifar10/resnet56/ensemble-none" and recs["none"]["kind"] == "smoke"
    assert recs["ensemble"]["variant"]["memory_bank"] is True
    assert recs["none"]["metrics"]["flops_reduction_pct"] == pytest.approx(100 * (1 - s["flops_rate"]))
    # a finished search is not rerun, and its files are not rewritten
    before = (run / "slimmed_params.pkl").stat().st_mtime_ns
    again = pruning.run_search_stage(args, log=lines.append)
    assert again["status"] == "finished-before" and (run / "slimmed_params.pkl").stat().st_mtime_ns == before
    assert json.loads((run / "search.json").read_text())["iterations"] == s["iterations"]
