"""The CI smoke pipeline on the real CIFAR-10 subset, through the entry point, run once for the module:
a full-prec baseline (2 accumulated micro-batches per step), then dis-chn-pruned in both variants at 0.5
with tiny iteration counts (PocketFlow's with distillation), --exec_mode eval of the pruned model, and a
second run that must not redo or overwrite a finished one. The tests assert on its outputs: every pruned conv keeps
exactly c - floor(0.5 c) input channels, pruned weights are exactly zero after the final fine-tuning, the
exported SavedModel is smaller and equal to the masked model, accuracy is well above chance (10 %)."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest

pytestmark = [pytest.mark.tf, pytest.mark.slow, pytest.mark.realdata]

tf = pytest.importorskip("tensorflow")

from dcp_tf import checkpoints, export, train  # noqa: E402
from dcp_tf import resnet_at_cifar10_run as entry  # noqa: E402
from shared import archs  # noqa: E402

COMMON = ["--resnet_size", "8", "--batch_size", "32", "--bn_decay", "0.9", "--summ_step", "0"]
VARIANTS = ("pocketflow", "paper")
TINY = ["--dcp_prune_ratio", "0.5", "--dcp_nb_stages", "1", "--dcp_nb_iters_block", "2", "--dcp_nb_iters_layer", "0",
        "--dcp_paper_stage_epochs", "0.05", "--dcp_paper_select_samples", "32",
        "--nb_epochs_rat", "0.002", "--dcp_save_every_picks", "0"]  # fmt: skip
# PocketFlow's variant with distillation; the paper's with 3 final steps (8 x 0.002 epochs)
EXTRA = {"pocketflow": ["--enbl_dst"], "paper": ["--dcp_paper_final_epochs", "8"]}


def run(*flags) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = entry.main([*COMMON, *flags])
    return code, out.getvalue(), err.getvalue()


def last_json(text: str) -> dict:
    return json.loads(text.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, cifar_dir):
    root = tmp_path_factory.mktemp("dcp_smoke")
    data = ["--data_dir", str(cifar_dir), "--records", str(root / "records"), "--save_path",
            str(root / "models/model.ckpt"), "--save_path_eval", str(root / "models_eval/model.ckpt")]  # fmt: skip
    # lr 0.4 x 32 / 128 = 0.1 for the short baseline; 2 accumulated micro-batches of 16 per step
    code, out, err = run(*data, "--learner", "full-prec", "--nb_iters_train", "100", "--lrn_rate_init", "0.4",
                         "--accum_steps", "2")  # fmt: skip
    assert code == 0, err[-3000:]
    runs = {"base": last_json(out)}
    for variant in VARIANTS:
        flags = [*data, "--learner", "dis-chn-pruned", "--dcp_variant", variant, "--resnet_def", "pocketflow", *TINY,
                 *EXTRA[variant], "--dcp_save_path", str(root / f"dcp_{variant}/model.ckpt"),
                 "--dcp_save_path_eval", str(root / f"dcp_{variant}_eval/model.ckpt")]  # fmt: skip
        code, out, err = run(*flags)
        assert code == 0, err[-3000:]
        runs[variant] = last_json(out)
        runs[f"{variant}_flags"] = flags
    flags = runs["pocketflow_flags"]
    code, out, err = run(*flags, "--exec_mode", "eval")
    assert code == 0, err[-3000:]
    runs["eval"] = last_json(out)
    finished = root / "dcp_pocketflow_eval"
    runs["before"] = {str(p): p.stat().st_mtime_ns for p in finished.rglob("*")}
    runs["again"] = run(*flags)
    runs["after"] = {str(p): p.stat().st_mtime_ns for p in finished.rglob("*")}
    return root, runs


def test_baseline_is_well_above_chance(pipeline):
    _, runs = pipeline
    assert runs["base"]["top1"] > 0.2, runs["base"]
    assert runs["base"]["steps"] == 100


@pytest.mark.parametrize("variant", VARIANTS)
def test_kept_channels_zeros_and_accuracy(pipeline, variant):
    root, runs = pipeline
    out = runs[variant]
    model, _ = checkpoints.load_model(root / f"dcp_{variant}_eval")
    pruned = [c for c in model.convs if c.role == "prunable"] if variant == "paper" else model.convs[1:]
    for c in pruned:
        assert out["kept"][c.label] == [archs.dcp_kept(c.c_in, 0.5), c.c_in]
    assert len(out["kept"]) == len(pruned)
    assert out["nonzero_in_pruned_slices"] == 0 and train.exact_zero_check(model) == 0
    assert out["top1"] > 0.18, out  # chance: 0.10; the baseline reaches about 0.24 in its 100 steps
    assert out["flops_reduction_x"] > 1.5


@pytest.mark.parametrize("variant", VARIANTS)
def test_export_is_smaller_and_equals_the_masked_model(pipeline, variant):
    root, runs = pipeline
    model, _ = checkpoints.load_model(root / f"dcp_{variant}_eval")
    x = np.random.default_rng(0).normal(size=(8, 32, 32, 3)).astype(np.float32)
    loaded = tf.saved_model.load(runs[variant]["export"]["saved_model"])
    y = next(iter(loaded.signatures["serving_default"](tf.constant(x)).values())).numpy()
    np.testing.assert_allclose(y, model(x, training=False).numpy(), rtol=1e-4, atol=1e-4)
    assert export.weight_count(export.build(model, "slim")) < export.weight_count(export.build(model, "dense"))


@pytest.mark.parametrize("variant", VARIANTS)
def test_metrics_and_run_record(pipeline, variant):
    root, runs = pipeline
    out = runs[variant]
    lines = (root / f"dcp_{variant}" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["phase"] for line in lines].count("select") == len(out["kept"])
    rec = json.loads(open(out["record"]).read())
    assert rec["variant"]["dcp_variant"] == variant and rec["kind"] == "smoke"
    assert rec["variant"]["enbl_dst"] is (variant == "pocketflow")


def test_baseline_record_has_the_accumulation(pipeline):
    root, runs = pipeline
    records = [json.loads(p.read_text()) for p in (root / "records").rglob("*.json")]
    (rec,) = [r for r in records if r["variant"]["method"] == "dense"]
    assert rec["config"]["accum_steps"] == 2 and rec["config"]["batch_size"] == 32


def test_eval_mode_reproduces_the_pruned_model(pipeline):
    _, runs = pipeline
    ev, out = runs["eval"], runs["pocketflow"]
    assert ev["top1"] == pytest.approx(out["top1"]) and ev["pr_msk"] == pytest.approx(out["pr_msk"])


def test_a_finished_run_is_neither_redone_nor_overwritten(pipeline):
    root, runs = pipeline
    code, out, err = runs["again"]
    assert code == 0 and "already in" in err
    assert not out.strip()  # no new summary: nothing was trained again
    assert runs["after"] == runs["before"]  # every file of the finished model untouched
