"""Smoke chain v0 -> v1 -> v2 -> v3 on the real CIFAR-10 subset (4,660 train / 932 test images), with the
original commands at a few dozen steps: the penalty drives gammas exactly to zero, compression gives
a physically smaller model with fewer parameters, eval prints its numbers, accuracy is well above 10%.

Settings: batch 32; v0 40 steps rho 0.001 (warm-up), v1 50 steps rho 0.18 (a penalty large enough
to zero gammas in 50 steps: 141 of them, 47% of the parameters; 0.12 zeroes none, the README's 0.005
needs tens of thousands), v2 30 steps rho 0 at lr 0.01 (recovers the accuracy the penalty cost).
--bn_decay 0.9: with slim's 0.999 the moving statistics are still near their initial values after a
few dozen steps and evaluation would be meaningless."""

from __future__ import annotations

import re

import pytest

pytestmark = [pytest.mark.tf, pytest.mark.realdata, pytest.mark.slow]

pytest.importorskip("tensorflow")

from ista_tf import cifar10_eval, cifar10_train  # noqa: E402
from shared.results import iter_records  # noqa: E402

STAGES = [  # (version, l1_penalty, max_steps, learning_rate)
    (0, "0.001", "40", "0.1"),
    (1, "0.18", "50", "0.1"),
    (2, "0.0", "30", "0.01"),
]


def test_smoke_chain_on_the_cifar10_subset(cifar_dir, tmp_path, capsys):
    prefix, records = tmp_path / "cifar10_train", tmp_path / "records"
    common = ["--data_dir", str(cifar_dir), "--train_dir", str(prefix), "--records", str(records)]
    for version, l1, steps, lr in STAGES:
        assert (
            cifar10_train.main(
                [
                    *common,
                    "--checkpoint_version",
                    str(version),
                    "--l1_penalty",
                    l1,
                    "--max_steps",
                    steps,
                    "--learning_rate",
                    lr,
                    "--batch_size",
                    "32",
                    "--bn_decay",
                    "0.9",
                    "--log_frequency",
                    "25",
                ]
            )
            == 0
        )
    train_log = capsys.readouterr().out
    assert re.search(r"step 50, loss = [\d.]+, group lasso = [\d.]+, fake sparsity = 0\.\d\d", train_log)

    evals = {}
    for version in (1, 2, 3):
        assert cifar10_eval.main([*common, "--checkpoint_version", str(version)]) == 0
        out = capsys.readouterr().out
        evals[version] = (
            int(re.search(r"total params: (\d+)", out).group(1)),
            float(re.search(r"precision @ 1 = ([\d.]+)", out).group(1)),
            float(re.search(r"test loss = ([\d.]+)", out).group(1)),
        )
    print("ista smoke chain (params, precision@1, test loss):", evals)

    stage = {r["variant"]["stage"]: r for _, r in iter_records([records]) if "stage" in r["variant"]}
    version = {r["variant"]["version"]: r for _, r in iter_records([records]) if "version" in r["variant"]}
    assert sorted(stage) == ["stage0", "stage1", "stage2"] and sorted(version) == ["v1", "v2", "v3"]
    assert stage["stage1"]["metrics"]["fake_sparsity"] > 0  # some gammas are exactly zero
    assert stage["stage1"]["metrics"]["channels_removed"] > 0
    assert (prefix.parent / "cifar10_train_2" / "compact").is_dir()
    assert evals[1][0] == 281_304 and evals[2][0] < evals[1][0]  # physically smaller: counted from real shapes
    assert evals[3][0] == evals[2][0]  # fine-tuning without penalty prunes nothing new
    assert evals[1][1] > 0.25 and evals[3][1] > 0.25  # chance is 0.10 (measured: v1 0.288, v2 0.102, v3 0.297)
    assert all(r["kind"] == "smoke" for _, r in iter_records([records]))
