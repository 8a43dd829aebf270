"""The CI smoke run on the real CIFAR-10 subset, through the entry point: a full-prec baseline, then
dis-chn-pruned in both variants at 0.5 with tiny iteration counts. Every pruned conv keeps exactly
c - floor(0.5 c) input channels, pruned weights are exactly zero after the final fine-tuning, the
exported SavedModel is smaller and equal to the masked model, accuracy is well above chance (10 %)."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytestmark = [pytest.mark.tf, pytest.mark.slow, pytest.mark.realdata]

tf = pytest.importorskip("tensorflow")

from dcp_tf import checkpoints, export, train  # noqa: E402
from dcp_tf import resnet_at_cifar10_run as entry  # noqa: E402
from shared import archs  # noqa: E402

COMMON = ["--resnet_size", "8", "--batch_size", "32", "--bn_decay", "0.9", "--summ_step", "0"]


def run(capsys, *flags) -> dict:
    assert entry.main([*COMMON, *flags]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def baseline(tmp_path_factory, cifar_dir):
    root = tmp_path_factory.mktemp("dcp_smoke")
    return root, cifar_dir


def test_full_prec_then_both_variants(baseline, capsys):
    root, cifar_dir = baseline
    data = ["--data_dir", str(cifar_dir)]
    base = run(capsys, *data, "--learner", "full-prec", "--nb_iters_train", "150",
               "--save_path", str(root / "models/model.ckpt"), "--save_path_eval", str(root / "models_eval/model.ckpt"),
               "--records", str(root / "records"))  # fmt: skip
    assert base["top1"] > 0.2, base
    for variant in ("pocketflow", "paper"):
        out = run(capsys, *data, "--learner", "dis-chn-pruned", "--dcp_variant", variant, "--resnet_def", "pocketflow",
                  "--dcp_prune_ratio", "0.5", "--dcp_nb_stages", "1", "--dcp_nb_iters_block", "2",
                  "--dcp_nb_iters_layer", "0", "--dcp_paper_stage_epochs", "0.05", "--dcp_paper_select_samples", "32",
                  "--dcp_paper_final_epochs", "1", "--nb_epochs_rat", "0.004", "--dcp_save_every_picks", "0",
                  "--save_path", str(root / "models/model.ckpt"),
                  "--dcp_save_path", str(root / f"dcp_{variant}/model.ckpt"),
                  "--dcp_save_path_eval", str(root / f"dcp_{variant}_eval/model.ckpt"),
                  "--records", str(root / "records"))  # fmt: skip
        model, _ = checkpoints.load_model(root / f"dcp_{variant}_eval")
        pruned = [c for c in model.convs if c.role == "prunable"] if variant == "paper" else model.convs[1:]
        for c in pruned:
            assert out["kept"][c.label] == [archs.dcp_kept(c.c_in, 0.5), c.c_in]
        assert len(out["kept"]) == len(pruned)
        assert out["nonzero_in_pruned_slices"] == 0 and train.exact_zero_check(model) == 0
        assert out["top1"] > 0.2, out
        assert out["flops_reduction_x"] > 1.5
        x = np.random.default_rng(0).normal(size=(8, 32, 32, 3)).astype(np.float32)
        loaded = tf.saved_model.load(out["export"]["saved_model"])
        y = next(iter(loaded.signatures["serving_default"](tf.constant(x)).values())).numpy()
        np.testing.assert_allclose(y, model(x, training=False).numpy(), rtol=1e-4, atol=1e-4)
        assert export.weight_count(export.build(model, "slim")) < export.weight_count(export.build(model, "dense"))
        lines = (root / f"dcp_{variant}" / "metrics.jsonl").read_text().splitlines()
        assert [json.loads(line)["phase"] for line in lines].count("select") == len(pruned)
        rec = json.loads(open(out["record"]).read())
        assert rec["variant"]["dcp_variant"] == variant and rec["kind"] == "smoke"
