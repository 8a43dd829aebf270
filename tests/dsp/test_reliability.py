"""Changed settings or data, a busy stage, damaged checkpoints, write failures, interruptions and --help
of the DSP commands, each through the entry point (`main(argv)` in this process; a subprocess only for
SIGTERM): the exit status, one message naming the thing, and no file changed.

One tiny pretraining stage (ResNet-20, 32 digits images, 2 epochs, 50 test images) is run once per
module: stopped after epoch 1 (the interrupted stage) and then finished; each case works on a copy.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from dsp_torch import cifar_dsp, cifar_finetune, cifar_pretrain, demo
from dsp_torch import eval as dsp_eval
from dsp_torch.checkpoints import save_checkpoint
from dsp_torch.models import cifar_resnet
from shared import paths
from shared.paths import RunFolderLock
from tests.conftest import REPO
from tests.files import snapshot

pytestmark = pytest.mark.torch

TINY = ["-l", "20", "--dataset", "digits", "--train-limit", "32", "--test-limit", "50", "-b", "32"]
PRETRAIN = [*TINY, "--epochs", "2"]


def run_main(main, argv, capsys) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """<root>/stopped: pretraining stopped after epoch 1 of 2; <root>/finished: the same, finished."""
    root = tmp_path_factory.mktemp("runs")
    assert cifar_pretrain.main([*PRETRAIN, "--save-dir", str(root / "stopped"), "--stop-after-epoch", "1"]) == 0
    shutil.copytree(root / "stopped", root / "finished")
    assert cifar_pretrain.main([*PRETRAIN, "--save-dir", str(root / "finished")]) == 0
    assert not list((root / "finished").glob(".*.lock"))  # the lock goes with the run
    return root


@pytest.fixture
def copy_of(runs, tmp_path):
    def copy(name):
        shutil.copytree(runs / name, tmp_path / name)
        return tmp_path / name

    return copy


# ----------------------------------------------------------------------------------------------------
# A stage resumes, or counts as finished, only with its settings and data
# ----------------------------------------------------------------------------------------------------


def test_finished_stage_rerun_with_the_same_flags_says_so(copy_of, capsys):
    run = copy_of("finished")
    before = snapshot(run)
    code, out, _ = run_main(cifar_pretrain.main, [*PRETRAIN, "--save-dir", run], capsys)
    assert code == 0 and "is already finished" in out and snapshot(run) == before


CHANGED = [
    (["--lr", "0.2"], "--lr 0.1 (now 0.2)"),
    (["--seed", "1"], "--seed 0 (now 1)"),
    (["--epochs", "3"], "--epochs 2 (now 3)"),
    (["--wd", "0.001"], "--wd 0.0001 (now 0.001)"),
    (["--train-limit", "64"], "train data digits n=32"),
    (["--test-limit", "60"], "test data digits n=50"),
]


@pytest.mark.parametrize("stage", ["finished", "stopped"])
@pytest.mark.parametrize("flags, named", CHANGED, ids=[c[0][0] for c in CHANGED])
def test_other_settings_or_data_are_refused(copy_of, capsys, stage, flags, named):
    run = copy_of(stage)
    before = snapshot(run)
    code, out, err = run_main(cifar_pretrain.main, [*PRETRAIN, "--save-dir", run, *flags], capsys)
    line = one_error(err)
    assert code == 2 and named in line and "--overwrite to start this stage afresh" in line
    assert f"was {'finished' if stage == 'finished' else 'started'} with other settings" in line
    assert "epoch" not in out and snapshot(run) == before


def _fake_cifar(folder, seed):
    """A CIFAR-10 folder of 10 training and 10 test images (python layout), content from `seed`."""
    import pickle

    import numpy as np

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        n = 2 if name != "test_batch" else 10
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, n)]
        with open(folder / name, "wb") as f:
            pickle.dump({"data": data, "labels": labels}, f, protocol=2)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, f, protocol=2)


def test_same_size_data_with_other_content_is_refused(tmp_path, capsys):
    _fake_cifar(tmp_path / "a" / "cifar-10-batches-py", 0)
    _fake_cifar(tmp_path / "b" / "cifar-10-batches-py", 1)
    argv = ["-l", "20", "-b", "10", "--epochs", "1", "--save-dir", tmp_path / "run"]
    assert run_main(cifar_pretrain.main, [*argv, "--data-dir", tmp_path / "a"], capsys)[0] == 0
    before = snapshot(tmp_path / "run")
    code, _, err = run_main(cifar_pretrain.main, [*argv, "--data-dir", tmp_path / "b"], capsys)
    line = one_error(err)
    assert code == 2 and "train data cifar10 n=10" in line and "content hash" in line
    assert snapshot(tmp_path / "run") == before


def test_a_busy_stage_is_refused_naming_the_holder(copy_of, capsys):
    run = copy_of("stopped")
    before = snapshot(run)
    with RunFolderLock(run, "test", name=".resnet20.pkl.lock", remove=True):
        code, _, err = run_main(cifar_pretrain.main, [*PRETRAIN, "--save-dir", run], capsys)
    line = one_error(err)
    assert code == 2 and f"is in use by process {os.getpid()}" in line and "the pretrain stage" in line
    assert snapshot(run) == before


def test_a_stage_stopped_in_its_first_epoch_starts_afresh(tmp_path, capsys, monkeypatch):
    """A full disk while the state of epoch 1 is saved: the error names the file and the cause, no
    temporary file is left, and the same command then starts the stage afresh (the best checkpoint
    written before the failure is this stage's own, not a foreign file)."""
    real_open = open

    class FullDisk:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    state_writes = []

    def full_disk(path, mode="r", *args, **kwargs):
        f = real_open(path, mode, *args, **kwargs)
        if ".state.pt.tmp" in str(path):
            state_writes.append(path)
            if len(state_writes) == 2:  # the first is the epoch-0 state written at the start
                return FullDisk(f)
        return f

    run = tmp_path / "run"
    argv = [*TINY, "--epochs", "1", "--save-dir", run]
    monkeypatch.setattr(paths, "open", full_disk, raising=False)
    code, _, err = run_main(cifar_pretrain.main, argv, capsys)
    monkeypatch.undo()
    line = one_error(err)
    assert code == 2 and f"cannot write {run / 'resnet20.pkl.state.pt'}: no space left on the device" in line
    assert not list(run.glob(".*tmp*")) and (run / "resnet20.pkl").is_file()
    code, out, _ = run_main(cifar_pretrain.main, argv, capsys)
    assert code == 0 and "stopped before its first epoch ended; starting afresh" in out
    assert torch.load(run / "resnet20.pkl.state.pt", weights_only=True)["finished"]


def test_unwritable_records_folder_is_found_before_training(tmp_path, capsys, monkeypatch):
    real_open = open

    def read_only(path, *args, **kwargs):
        if ".write-test" in str(path):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(paths, "open", read_only, raising=False)
    argv = [*TINY, "--epochs", "1", "--save-dir", tmp_path / "run", "--records", tmp_path / "rec"]
    code, out, err = run_main(cifar_pretrain.main, argv, capsys)
    line = one_error(err)
    assert code == 2 and f"cannot write run record folder {tmp_path / 'rec'}: the file system is read-only" in line
    assert "epoch" not in out and os.listdir(tmp_path) == []


# ----------------------------------------------------------------------------------------------------
# Checkpoints: damaged files and a model for another data set
# ----------------------------------------------------------------------------------------------------


@pytest.fixture
def bad_ckpts(tmp_path):
    (tmp_path / "random.pkl").write_bytes(os.urandom(3000))
    (tmp_path / "empty.pkl").write_bytes(b"")
    save_checkpoint(
        tmp_path / "c100.pkl",
        stage="pretrained",
        model=cifar_resnet(20, 100),
        arch={"family": "cifar", "depth": 20, "num_classes": 100},
        best_acc=1.0,
    )
    return tmp_path


CKPT_CASES = [
    ("random.pkl", "not a torch.save file (3,000 bytes, neither a zip archive nor a pickle); expected a file"),
    ("empty.pkl", "the file is empty (0 bytes); expected a file written by torch.save"),
    ("c100.pkl", "holds a 100-class model, but the data has 10 classes"),
]


@pytest.mark.parametrize("name, message", CKPT_CASES, ids=[c[0] for c in CKPT_CASES])
def test_group_learning_from_a_bad_checkpoint(bad_ckpts, capsys, name, message):
    before = snapshot(bad_ckpts)
    argv = [*TINY, "--epochs", "1", "--save-dir", bad_ckpts / "run", "--ckpt", bad_ckpts / name]
    code, _, err = run_main(cifar_dsp.main, argv, capsys)
    line = one_error(err)
    assert code == 2 and message in line and str(bad_ckpts / name) in line and "weights_only" not in line
    assert snapshot(bad_ckpts) == before


@pytest.mark.parametrize("name, message", CKPT_CASES, ids=[c[0] for c in CKPT_CASES])
def test_evaluating_a_bad_checkpoint(bad_ckpts, capsys, name, message):
    if name == "c100.pkl":
        message = "gives (100,) outputs per image, but digits has 10 classes"
    code, out, err = run_main(dsp_eval.main, ["--ckpt", bad_ckpts / name, "--dataset", "digits"], capsys)
    assert code == 2 and message in one_error(err) and "top-1" not in out


def test_evaluation_checks_the_record_folder_first(bad_ckpts, capsys, monkeypatch):
    real_open = open

    def full_disk(path, *args, **kwargs):
        if ".write-test" in str(path):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(paths, "open", full_disk, raising=False)
    argv = ["--ckpt", bad_ckpts / "c100.pkl", "--dataset", "digits", "--records", bad_ckpts / "rec"]
    code, out, err = run_main(dsp_eval.main, argv, capsys)
    assert code == 2 and f"cannot write run record folder {bad_ckpts / 'rec'}: no space left" in one_error(err)
    assert "top-1" not in out and not (bad_ckpts / "rec").exists()


# ----------------------------------------------------------------------------------------------------
# Numbers
# ----------------------------------------------------------------------------------------------------

BAD_NUMBERS = [
    (cifar_pretrain.main, ["--lr", "nan"], "--lr must be a finite number"),
    (cifar_pretrain.main, ["--train-limit", "-5"], "--train-limit must be >= 1, got -5"),
    (cifar_pretrain.main, ["--test-limit", "0"], "--test-limit must be >= 1, got 0"),
    (cifar_dsp.main, ["-r", "nan"], "-r/--regularize must be a finite number"),
    (cifar_finetune.main, ["-p", "nan"], "-p/--prune must be a finite number"),
    (cifar_finetune.main, ["-c", "5", "--epochs", "1"], "-c/--cycles 5 needs --epochs of at least 5"),
    (dsp_eval.main, ["--batch-size", "0"], "--batch-size must be in [1, 1000000], got 0"),
    (dsp_eval.main, ["--batch-size", "-1"], "--batch-size must be in [1, 1000000], got -1"),
]


@pytest.mark.parametrize("main, flags, message", BAD_NUMBERS, ids=[" ".join(c[1]) for c in BAD_NUMBERS])
def test_bad_numbers_exit_2_and_write_nothing(tmp_path, capsys, main, flags, message):
    argv = ["--ckpt", tmp_path / "none.pt"] if main is dsp_eval.main else ["--save-dir", tmp_path / "run"]
    code, _, err = run_main(main, [*argv, "--dataset", "digits", *flags], capsys)
    assert code == 2 and message in one_error(err) and os.listdir(tmp_path) == []


# ----------------------------------------------------------------------------------------------------
# SIGTERM, --help
# ----------------------------------------------------------------------------------------------------


def test_sigterm_stops_like_ctrl_c_and_says_how_to_resume(tmp_path, capsys):
    run = tmp_path / "run"
    argv = [*TINY, "--epochs", "1000", "--save-dir", str(run)]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "dsp_torch.cifar_pretrain", *argv],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    state = run / "resnet20.pkl.state.pt"
    try:
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None:
            if state.is_file() and torch.load(state, weights_only=True)["epoch"] >= 1:
                break
            time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err[-2000:]
    assert "holds the pretrain stage after epoch" in err and "run the same command again to resume" in err
    assert "Traceback" not in err and not list(run.glob(".*.lock"))
    done = torch.load(state, weights_only=True)["epoch"]
    code, out, _ = run_main(cifar_pretrain.main, [*argv, "--stop-after-epoch", str(done + 1)], capsys)
    assert code == 0 and f"at the end of epoch {done}" in out


HELP = [
    (dsp_eval.main, ["--dataset", "embedded demo set", "--batch-size", "not the accuracy"]),
    (demo.main, ["--epochs", "pretraining, group learning", "164 120 400"]),
    (cifar_finetune.main, ["--cascade-passes 10 makes it about 12x shorter", "SIGTERM"]),
]


@pytest.mark.parametrize("main, texts", HELP, ids=["eval", "demo", "cifar_finetune"])
def test_help_explains_the_flags(capsys, main, texts):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert exit_.value.code == 0 and all(t in out for t in texts), out
