"""On the real CIFAR-10 subset and the authors' ResNet-56: its accuracy and counts, and the whole
pipeline in miniature, run once (module fixture): warm-up, search to a loose target (0.8 of the FLOPs
kept), memory bank, slimming, both fine-tuning variants, records; the tests below check its outputs,
among them that the slimmed network computes what the masked one does."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

# the pipeline fixture takes ~20 CPU-seconds (one-off functions eager); allow for a busy machine
pytestmark = [pytest.mark.tf, pytest.mark.realdata, pytest.mark.timeout(1800)]
pytestmark.append(pytest.mark.usefixtures("eager_functions"))

tf = pytest.importorskip("tensorflow")

from ekg_tf2 import data, params, pruning, test, train, train_cifar  # noqa: E402
from ekg_tf2.flops import count  # noqa: E402
from shared.results import iter_records  # noqa: E402

TARGET = 0.8


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


@pytest.fixture(scope="module")
def pipeline(res56, cifar_dir, tmp_path_factory):
    """The README command from the authors' ResNet-56, smoke-sized: D^val and D^subset 1 image per class,
    --search_step 1.0 (the original's flag: an inner conv drops to one channel per step, so a handful of
    iterations reach 0.8), 40 training images for the bank, one fine-tuning step per variant."""
    tmp = tmp_path_factory.mktemp("ekg-pipeline")
    run, rec = tmp / "run", tmp / "rec"
    common = ["--arch", "ResNet-56", "--dataset", "CIFAR10", "--data_dir", str(cifar_dir), "--xla", "off"]
    common += ["--train_limit", "40", "--test_limit", "20", "--records", str(rec)]
    common += ["--train_epoch", "1", "--max_steps", "1", "--batch_size", "16"]
    search = ["--val_per_class", "1", "--subset_per_class", "1", "--search_batch_size", "10", "--search_step", "1.0"]
    args = train_cifar.build_parser().parse_args(
        common + search + ["--search_target_rate", str(TARGET), "--train_path", str(run), "--trained_param", str(res56)]
    )
    lines = []
    out = train_cifar.run(args, log=lines.append)
    # the full method from the same search: --Knowledge fine-tuning with the memory bank
    kd = train.build_parser().parse_args(
        common + ["--Knowledge", "--trained_param", str(run / "slimmed_params.pkl"), "--train_path", str(tmp / "kd")]
    )
    kd_out = train.run(kd, log=lines.append)
    return SimpleNamespace(args=args, run=run, rec=rec, out=out, kd=kd_out, s=out["search"], lines=lines)


def test_search_lands_at_or_just_under_the_target(pipeline):
    s = pipeline.s
    search = s["search"]
    # the target is FLOPs KEPT, by the code's counter; fine_search lands just under it: one more
    # channel on the last gate pruned would cross it
    assert s["flops_rate"] <= TARGET
    last = next(g for g in search.history[-1]["kept"] if search.history[-1]["kept"][g] != search.history[-2]["kept"][g])
    kept = dict(search.history[-1]["kept"])
    kept[last] += 1
    assert search.flops(kept) > TARGET * search.ori_flops
    assert count(search.model) == count(s["slimmed"])
    assert s["iterations"] == len(search.history) - 1 >= 2
    # nested sub-networks: every history entry keeps a subset of the previous one's channels
    for prev, cur in zip(search.history, search.history[1:]):
        for g in prev["kept"]:
            keep_prev = set(np.flatnonzero(prev["orders"][g] < prev["kept"][g]))
            keep_cur = set(np.flatnonzero(cur["orders"][g] < cur["kept"][g]))
            assert keep_cur <= keep_prev, g


def test_memory_bank_from_the_interim_networks(pipeline):
    s, search = pipeline.s, pipeline.s["search"]
    # teachers from the interim networks (the final excluded), teacher 0 the lowest loss
    interim = [h["loss"] for h in search.history[:-1]]
    assert s["teachers"][0] == int(np.argmin(interim)) and max(s["teachers"]) < len(search.history) - 1
    bank = np.load(pipeline.run / "CIFAR10_knowledge.npy", mmap_mode="r")
    assert bank.shape == (40, 10, min(5, len(interim)))
    # teacher 0's logits are the network of its history entry on the unaugmented training images
    search.apply_mask_state(search.history[s["teachers"][0]])
    train_split = data.limited(data.load_split("CIFAR10", "train", pipeline.args.data_dir), 10)
    x = data.normalize(train_split.images, "CIFAR10")
    expected = search.model(x, training=True, update=False).numpy()
    search.apply_mask_state(search.history[-1])
    np.testing.assert_allclose(bank[:10, :, 0], expected, rtol=1e-4, atol=1e-4)


def test_slimmed_network_saved_reloaded_computes_what_the_masked_one_does(pipeline, cifar_dir):
    search = pipeline.s["search"]
    slim = params.load_model("ResNet-56", "CIFAR10", pipeline.run / "slimmed_params.pkl")
    test_split = data.limited(data.load_split("CIFAR10", "test", str(cifar_dir)), 20)
    x = data.normalize(test_split.images, "CIFAR10")
    for training in (True, False):
        masked = search.model(x, training=training, update=False).numpy()
        np.testing.assert_allclose(slim(x, training=training, update=False).numpy(), masked, rtol=1e-4, atol=1e-4)
    assert sum(slim.widths.values()) < sum(search.model.widths.values())


def test_both_fine_tuning_variants_and_their_records(pipeline):
    s = pipeline.s
    assert (pipeline.run / "trained_params.pkl").is_file() and pipeline.out["finetune"]["knowledge"] == "none"
    assert pipeline.kd["knowledge"] == "ensemble" and pipeline.kd["steps"] == 1
    recs = {r["variant"]["finetune_knowledge"]: r for _, r in iter_records([pipeline.rec])}
    assert recs["none"]["row"] == "ablation/cifar10/resnet56/ensemble-none" and recs["none"]["kind"] == "smoke"
    assert recs["ensemble"]["variant"]["memory_bank"] is True
    assert recs["none"]["metrics"]["flops_reduction_pct"] == pytest.approx(100 * (1 - s["flops_rate"]))


def test_a_finished_search_is_not_rerun(pipeline):
    run = pipeline.run
    before = (run / "slimmed_params.pkl").stat().st_mtime_ns
    again = pruning.run_search_stage(pipeline.args, log=pipeline.lines.append)
    assert again["status"] == "finished-before" and (run / "slimmed_params.pkl").stat().st_mtime_ns == before
    assert json.loads((run / "search.json").read_text())["iterations"] == pipeline.s["iterations"]
