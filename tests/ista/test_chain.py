"""The original commands on the embedded digits: the v0 -> v1 -> v2 chain, eval, resume after an
interruption, and bad input (clear message, exit status 2, nothing overwritten)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.tf

tf = pytest.importorskip("tensorflow")

from ista_tf import chain as stages  # noqa: E402
from ista_tf import cifar10_eval, cifar10_train  # noqa: E402
from ista_tf.models import build_model  # noqa: E402
from ista_tf.train import StageConfig, run_stage  # noqa: E402
from shared.results import iter_records  # noqa: E402

FAST = ["--dataset", "digits", "--batch_size", "16", "--log_frequency", "5"]


def train(train_dir, *args) -> int:
    return cifar10_train.main([*FAST, "--train_dir", str(train_dir), *args])


def evaluate(train_dir, *args) -> int:
    return cifar10_eval.main(["--dataset", "digits", "--train_dir", str(train_dir), *args])


def snapshot(root: Path) -> dict:
    """Every file under root with its size, mtime and content hash."""
    return {
        str(p.relative_to(root)): (
            p.stat().st_size,
            p.stat().st_mtime_ns,
            hashlib.sha256(p.read_bytes()).hexdigest(),
        )
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """v0 (10 steps, small penalty) -> v1 (10 steps, large penalty: some gammas reach exactly 0)."""
    root = tmp_path_factory.mktemp("ista_chain")
    prefix, records = root / "run", root / "records"
    assert (
        train(
            prefix,
            "--checkpoint_version",
            "0",
            "--max_steps",
            "10",
            "--l1_penalty",
            "0.001",
            "--records",
            str(records),
        )
        == 0
    )
    assert (
        train(
            prefix,
            "--checkpoint_version",
            "1",
            "--max_steps",
            "10",
            "--l1_penalty",
            "1.2",
            "--fold",
            "paper",
            "--records",
            str(records),
        )
        == 0
    )
    return root, prefix, records


def test_chain_writes_each_version_and_prunes_exact_zeros(chain, capsys):
    root, prefix, records = chain
    for v in (0, 1):
        assert (root / f"run_{v}" / "finished.json").is_file()
        assert (root / f"run_{v + 1}" / "compact" / "arch.json").is_file()
    recs = [r for _, r in iter_records([records])]
    by_stage = {r["variant"]["stage"]: r for r in recs}  # training stages: "stageN", never a version "vN"
    assert sorted(by_stage) == ["stage0", "stage1"] and all(r["kind"] == "smoke" for r in recs)
    assert by_stage["stage1"]["variant"] == {
        "model": "resnet20",
        "stage": "stage1",
        "fold": "paper",
        "alpha": 1.0,
        "l1_penalty": 1.2,
        # the settings a README row requires (defaults here)
        "bn_decay": 0.999,
        "precision": "float32",
        "accum_steps": 1,
    }
    assert by_stage["stage1"]["row"] == "readme/cifar10/resnet20/stage1-log"
    assert by_stage["stage1"]["metrics"]["channels_removed"] > 0
    assert by_stage["stage1"]["metrics"]["params"] < 281_304
    assert by_stage["stage1"]["metrics"]["fake_sparsity"] > 0
    # eval of version 2 prints the README's three numbers from the compact model's real shapes
    capsys.readouterr()
    assert evaluate(prefix, "--checkpoint_version", "2") == 0
    out = capsys.readouterr().out
    params = int(re.search(r"total params: (\d+)", out).group(1))
    assert params == by_stage["stage1"]["metrics"]["params"]
    assert re.search(r"precision @ 1 = 0\.\d{4}", out) and re.search(r"test loss = \d+\.\d{4}", out)
    # its record (under the version's folder by default) names the evaluated version, not a stage
    [(_, ev)] = iter_records([root / "run_2" / "records"])
    assert ev["variant"]["version"] == "v2" and "stage" not in ev["variant"]
    assert ev["row"] == "readme/cifar10/resnet20/v2" and ev["variant"]["l1_penalty"] == 1.2  # stage 1 made it
    # the unpruned, averaged net of version 0
    assert evaluate(prefix, "--checkpoint_version", "0", "--is_compressed=false") == 0
    assert "total params: 281304" in capsys.readouterr().out


def test_rerunning_a_finished_stage_says_so_and_changes_nothing(chain, capsys):
    root, prefix, _ = chain
    before = snapshot(root)
    capsys.readouterr()
    assert train(prefix, "--checkpoint_version", "0", "--max_steps", "10", "--l1_penalty", "0.001") == 0
    assert "already finished" in capsys.readouterr().out
    assert train(prefix, "--checkpoint_version", "0", "--max_steps", "10", "--l1_penalty", "0.01") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: stage 0") and "l1_penalty=0.001" in err and err.count("\n") == 1
    assert snapshot(root) == before


@pytest.mark.parametrize(
    "args, message",
    [
        (["--checkpoint_version", "1", "--l1_penalty", "-0.001"], "--l1_penalty must be in [0.0, inf]"),
        (["--checkpoint_version", "3", "--l1_penalty", "0.01"], "needs the compact model of stage 2"),
        (
            ["--checkpoint_version", "1", "--model", "cnn4", "--l1_penalty", "0.01"],
            "holds a 'resnet20' model",
        ),
        (["--checkpoint_version", "2", "--accum_steps", "3"], "not divisible by --accum_steps"),
    ],
)
def test_bad_training_input_gives_one_clear_message(chain, capsys, args, message):
    root, prefix, _ = chain
    before = snapshot(root)
    capsys.readouterr()
    assert train(prefix, "--max_steps", "5", *args) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("error: ") and "Traceback" not in err
    assert snapshot(root) == before


def test_bad_eval_input_gives_one_clear_message(chain, capsys):
    _, prefix, _ = chain
    capsys.readouterr()
    assert evaluate(prefix, "--checkpoint_version", "2", "--model", "cnn4") == 2
    assert "holds a 'resnet20' model" in capsys.readouterr().err
    assert evaluate(prefix, "--checkpoint_version", "7") == 2
    assert "no compact model of version 7" in capsys.readouterr().err


def test_missing_data_folder_gives_one_clear_message(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("PRUNING_DATA_DIR", raising=False)
    prefix = tmp_path / "run"
    args = ["--train_dir", str(prefix), "--max_steps", "5"]
    assert cifar10_train.main([*args, "--data_dir", str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert cifar10_train.main(args) == 2
    assert "pass --data_dir DIR or set PRUNING_DATA_DIR" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def _weights(folder: Path) -> dict[str, np.ndarray]:
    reader = tf.train.load_checkpoint(str(folder / "model"))
    return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map() if "model" in k}


def _zero_gammas(checkpoint: str) -> int:
    reader = tf.train.load_checkpoint(checkpoint)
    names = [k for k in reader.get_variable_to_shape_map() if "gamma" in k and "model" in k and "ema" not in k]
    return sum(int(np.count_nonzero(reader.get_tensor(k) == 0)) for k in names)


def test_interrupted_stage_resumes_to_the_same_result(tmp_path, digits_train):
    """A run whose prox zeroes gammas before the interruption (the resumed state holds exact zeros).
    The stage is stage 1 of a small cnn4 (a compact version 1 written here): the resume path is the
    same for every model and stage, and a small net keeps the four runs cheap."""
    cfg = StageConfig(
        model="cnn4", l1_penalty=3.0, max_steps=12, batch_size=16, save_checkpoint_steps=4, log_frequency=100
    )
    data = digits_train.subset(256)
    start = build_model({"model": "cnn4", "widths": [8, 12, 12, 16]}, seed=3)
    for prefix in (tmp_path / "ref", tmp_path / "run"):
        stages.write_compact(start, stages.compact_dir(prefix, 1), [])
    run_stage(cfg, tmp_path / "ref", 1, data, log=lambda s: None)

    def crash_at(n, exc):
        def hook(step):
            if step == n:
                raise exc

        return hook

    # a crash after step 6: the run resumes from the periodic checkpoint of step 4
    with pytest.raises(RuntimeError):
        run_stage(cfg, tmp_path / "run", 1, data, on_step=crash_at(6, RuntimeError("simulated crash")), log=print)
    assert tf.train.latest_checkpoint(tmp_path / "run_1" / "train").endswith("ckpt-4")
    assert _zero_gammas(tf.train.latest_checkpoint(tmp_path / "run_1" / "train")) > 0
    # Ctrl-C after step 9: a checkpoint of step 9 is written on the way out
    with pytest.raises(KeyboardInterrupt):
        run_stage(cfg, tmp_path / "run", 1, data, on_step=crash_at(9, KeyboardInterrupt()), log=print)
    assert tf.train.latest_checkpoint(tmp_path / "run_1" / "train").endswith("ckpt-9")
    assert not (tmp_path / "run_2").exists()
    result = run_stage(cfg, tmp_path / "run", 1, data, log=print)
    assert result["status"] == "trained" and result["steps"] == 12 and result["zero_gammas"] > 0
    assert result["widths_after"] != [8, 12, 12, 16]  # channels were pruned

    ref, resumed = _weights(tmp_path / "ref_2" / "compact"), _weights(tmp_path / "run_2" / "compact")
    assert ref.keys() == resumed.keys() and len(ref) >= 20
    for key in ref:
        np.testing.assert_allclose(resumed[key], ref[key], atol=1e-6, err_msg=key)
    assert (tmp_path / "ref_1" / "pruned_channels.json").read_text() == (
        tmp_path / "run_1" / "pruned_channels.json"
    ).read_text()
