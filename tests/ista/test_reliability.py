"""Bad input, damaged checkpoints, write failures, changed settings or data, a busy run folder and --help,
each through the entry points (`main(argv)` in this process; a subprocess only for the --help output):
exit status 2, one message naming the thing, and no file changed.

One tiny finished stage (cnn4, 2 steps of 8 digits, a checkpoint per step) is trained once per module
and copied for every case that changes it.
"""

from __future__ import annotations

import errno
import os
import re
import runpy
import shutil
import subprocess
import sys

import pytest

pytestmark = pytest.mark.tf

pytest.importorskip("tensorflow")

from ista_tf import chain, cifar10_eval, cifar10_train, demo  # noqa: E402
from shared import paths  # noqa: E402
from shared.results.records import find_records  # noqa: E402
from tests.conftest import REPO  # noqa: E402
from tests.files import snapshot  # noqa: E402

TINY = ["--model", "cnn4", "--dataset", "digits", "--batch_size", "8", "--bn_decay", "0.9", "--log_frequency", "1"]
TRAIN = [*TINY, "--max_steps", "2", "--save_checkpoint_steps", "1", "--l1_penalty", "0.5"]
EVAL = ["--model", "cnn4", "--dataset", "digits", "--batch_size", "50", "--num_examples", "100"]


def run_main(module, argv, capsys) -> tuple[int, str, str]:
    code = module.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """<tmp>/tr_0: stage 0 finished (checkpoints of steps 1 and 2), <tmp>/tr_1: its compact model."""
    root = tmp_path_factory.mktemp("finished")
    assert cifar10_train.main([*TRAIN, "--train_dir", str(root / "tr")]) == 0
    assert (root / "tr_0" / "finished.json").is_file() and (root / "tr_1" / "compact").is_dir()
    return root


@pytest.fixture
def run_copy(finished, tmp_path):
    shutil.copytree(finished, tmp_path / "run")
    return tmp_path / "run"


# ----------------------------------------------------------------------------------------------------
# 1. Numbers: non-finite and out-of-range flags fail before anything is written
# ----------------------------------------------------------------------------------------------------

BAD_TRAIN_FLAGS = [
    (["--learning_rate", "nan"], "--learning_rate must be a finite number"),
    (["--l1_penalty", "nan"], "--l1_penalty must be a finite number"),
    (["--l1_penalty", "inf"], "--l1_penalty must be a finite number"),
    (["--weight_decay", "-1"], "--weight_decay must be in [0.0, inf], got -1.0"),
    (["--alpha", "inf"], "--alpha must be a finite number"),
    (["--bn_decay", "nan"], "--bn_decay must be a finite number"),
    (["--bn_decay", "1"], "--bn_decay must be in [0.0, 1.0), got 1.0"),
    (["--max_steps", "0"], "--max_steps must be >= 1, got 0"),
    (["--max_steps", "-5"], "--max_steps must be >= 1, got -5"),
    (["--batch_size", "0"], "--batch_size must be >= 1, got 0"),
    (["--accum_steps", "-1"], "--accum_steps must be >= 1, got -1"),
    (["--log_frequency", "0"], "--log_frequency must be >= 1, got 0"),
    (["--seed", "-1"], "--seed must be >= 0, got -1"),
    (["--save_checkpoint_steps", "-1"], "--save_checkpoint_steps must be >= 0, got -1"),
    (["--save_checkpoint_secs", "nan"], "--save_checkpoint_secs must be a finite number"),
    (["--checkpoint_version", "-1"], "--checkpoint_version must be >= 0, got -1"),
]


@pytest.mark.parametrize("flags, message", BAD_TRAIN_FLAGS, ids=lambda x: " ".join(x) if isinstance(x, list) else "")
def test_bad_training_numbers_exit_2_and_write_nothing(tmp_path, capsys, flags, message):
    code, _, err = run_main(cifar10_train, [*TRAIN, "--train_dir", tmp_path / "tr", *flags], capsys)
    assert code == 2 and err.startswith(f"error: {message}") and len(err.strip().splitlines()) == 1, err
    assert os.listdir(tmp_path) == []  # no stage file left behind


BAD_EVAL_FLAGS = [
    (["--batch_size", "0"], "--batch_size must be >= 1, got 0"),
    (["--num_examples", "-1"], "--num_examples must be >= 1, got -1"),
    (["--checkpoint_version", "-1"], "--checkpoint_version must be >= 0, got -1"),
    (["--checkpoint_iter", "-2"], "--checkpoint_iter must be >= -1, got -2"),
]


@pytest.mark.parametrize("flags, message", BAD_EVAL_FLAGS, ids=lambda x: " ".join(x) if isinstance(x, list) else "")
def test_bad_evaluation_numbers_exit_2_and_write_nothing(run_copy, capsys, flags, message):
    before = snapshot(run_copy)
    code, out, err = run_main(cifar10_eval, [*EVAL, "--train_dir", run_copy / "tr", *flags], capsys)
    assert code == 2 and message in err and "precision" not in out
    assert snapshot(run_copy) == before


# ----------------------------------------------------------------------------------------------------
# 2. Damaged checkpoints; a file where a stage folder should be
# ----------------------------------------------------------------------------------------------------


def truncate(prefix_folder, pattern: str) -> None:
    for path in prefix_folder.glob(pattern):
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])


def test_truncated_compact_model_names_the_folder(run_copy, capsys):
    truncate(run_copy / "tr_1" / "compact", "model.data-*")
    before = snapshot(run_copy)
    code, out, err = run_main(
        cifar10_eval, [*EVAL, "--train_dir", run_copy / "tr", "--checkpoint_version", "1"], capsys
    )
    assert code == 2 and "Traceback" not in err
    assert f"cannot restore the model in {run_copy / 'tr_1' / 'compact'}: the checkpoint is damaged" in err
    assert "precision" not in out and snapshot(run_copy) == before


def test_truncated_training_checkpoint_in_eval_names_it(run_copy, capsys):
    truncate(run_copy / "tr_0" / "train", "ckpt-2.data-*")
    before = snapshot(run_copy)
    argv = [*EVAL, "--train_dir", run_copy / "tr", "--checkpoint_version", "0", "--is_compressed", "false"]
    code, _, err = run_main(cifar10_eval, argv, capsys)
    assert code == 2 and f"cannot restore the training checkpoint {run_copy / 'tr_0' / 'train' / 'ckpt-2'}" in err
    assert snapshot(run_copy) == before


def unfinish(run) -> None:
    """Make stage 0 of `run` an interrupted one: checkpoints and stage.json, no result yet."""
    for name in ("finished.json", "record.json", "pruned_channels.json"):
        (run / "tr_0" / name).unlink()
    shutil.rmtree(run / "tr_1")


def test_resume_falls_back_to_the_previous_checkpoint_with_a_note(run_copy, capsys):
    unfinish(run_copy)
    truncate(run_copy / "tr_0" / "train", "ckpt-2.data-*")  # the newest, as a full disk leaves it
    code, out, err = run_main(cifar10_train, [*TRAIN, "--train_dir", run_copy / "tr"], capsys)
    assert code == 0, err
    assert "note: checkpoint ckpt-2 (" in out and f"is damaged; resuming from {run_copy}/tr_0/train/ckpt-1" in out
    assert "(step 1)" in out and (run_copy / "tr_0" / "finished.json").is_file()


def test_resume_with_every_checkpoint_damaged_names_the_folder(run_copy, capsys):
    unfinish(run_copy)
    truncate(run_copy / "tr_0" / "train", "ckpt-*.data-*")
    before = snapshot(run_copy)
    code, _, err = run_main(cifar10_train, [*TRAIN, "--train_dir", run_copy / "tr"], capsys)
    assert code == 2 and f"no checkpoint in {run_copy / 'tr_0' / 'train'} can be restored" in err
    assert f"remove {run_copy / 'tr_0'} to train this stage afresh" in err
    assert snapshot(run_copy) == before


def test_stage_folder_that_is_a_file(tmp_path, capsys):
    (tmp_path / "tr_0").write_text("not a folder")
    code, _, err = run_main(cifar10_train, [*TRAIN, "--train_dir", tmp_path / "tr"], capsys)
    assert code == 2 and err.strip() == (
        f"error: cannot create stage 0 folder {tmp_path / 'tr_0'}: {tmp_path / 'tr_0'} is a file, not a folder"
    )
    code, _, err = run_main(cifar10_eval, [*EVAL, "--train_dir", tmp_path / "tr", "--checkpoint_version", "0"], capsys)
    assert code == 2 and f"{tmp_path / 'tr_0'} is a file, not a stage folder" in err
    assert os.listdir(tmp_path) == ["tr_0"] and (tmp_path / "tr_0").read_text() == "not a folder"


# ----------------------------------------------------------------------------------------------------
# 3. Write failures name the path and the cause; evaluation checks first
# ----------------------------------------------------------------------------------------------------


def test_full_disk_is_found_before_the_evaluation_runs(run_copy, capsys, monkeypatch):
    real_open = open

    def full_disk(path, *args, **kwargs):
        if ".write-test" in str(path):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(paths, "open", full_disk, raising=False)
    before = snapshot(run_copy)
    code, out, err = run_main(
        cifar10_eval, [*EVAL, "--train_dir", run_copy / "tr", "--records", run_copy / "rec"], capsys
    )
    assert code == 2 and f"cannot write run record folder {run_copy / 'rec' / 'ista'}: no space left" in err
    assert "precision" not in out  # refused before the evaluation, not after it
    assert snapshot(run_copy) == before


def test_unwritable_records_folder_is_found_before_training(tmp_path, capsys, monkeypatch):
    real_open = open

    def read_only(path, *args, **kwargs):
        if ".write-test" in str(path):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(paths, "open", read_only, raising=False)
    argv = [*TRAIN, "--train_dir", tmp_path / "tr", "--records", tmp_path / "rec"]
    code, out, err = run_main(cifar10_train, argv, capsys)
    assert (
        code == 2 and f"cannot write run record folder {tmp_path / 'rec' / 'ista'}: the file system is read-only" in err
    )
    assert "step" not in out and os.listdir(tmp_path) == []


def test_a_stage_stopped_after_writing_its_compact_model_finishes_on_rerun(run_copy, capsys):
    """A failure between the compact model and finished.json (a full disk): the same command completes
    the stage from its final checkpoint instead of refusing to overwrite its own output."""
    for name in ("finished.json", "record.json"):
        (run_copy / "tr_0" / name).unlink()
    code, out, err = run_main(cifar10_train, [*TRAIN, "--train_dir", run_copy / "tr"], capsys)
    assert code == 0, err
    assert "(step 2)" in out and (run_copy / "tr_0" / "finished.json").is_file()
    # another stage's output in the same place is still refused
    (run_copy / "tr_0" / "finished.json").unlink()
    code, _, err = run_main(cifar10_train, [*TRAIN, "--train_dir", run_copy / "tr", "--max_steps", "3"], capsys)
    assert code == 2 and f"{run_copy / 'tr_1' / 'compact'} already exists but stage 0" in err


def test_compact_model_write_failure_leaves_no_partial_folder(tmp_path, monkeypatch):
    from ista_tf.models import build_model, full_arch

    model = build_model(full_arch("cnn4"))

    def no_space(path, obj):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(chain, "write_json", no_space)
    with pytest.raises(chain.WriteFailed, match=rf"cannot write the compact model {tmp_path / 'tr_1' / 'compact'}: no"):
        chain.write_compact(model, tmp_path / "tr_1" / "compact", [])
    assert os.listdir(tmp_path / "tr_1") == []  # the temporary folder is gone


def test_checkpoint_write_failure_names_the_stage_folder(tmp_path, capsys, monkeypatch):
    import tensorflow as tf

    from shared import tf_train

    def no_space(self, step):
        raise tf.errors.ResourceExhaustedError(None, None, "ckpt-1.data-00000-of-00001; No space left on device")

    monkeypatch.setattr(tf_train.CheckpointKeeper, "save", no_space)
    code, _, err = run_main(cifar10_train, [*TRAIN, "--train_dir", tmp_path / "tr"], capsys)
    assert code == 2 and "Traceback" not in err
    assert f"cannot write the checkpoints of stage 0 in {tmp_path / 'tr_0'}: " in err and "No space left" in err
    assert not (tmp_path / "tr_0" / "finished.json").exists() and not (tmp_path / "tr_1").exists()


# ----------------------------------------------------------------------------------------------------
# 4. Same settings and data, one run per folder
# ----------------------------------------------------------------------------------------------------


def test_finished_stage_rerun_on_other_data_is_refused(run_copy, capsys, cifar_dir):
    before = snapshot(run_copy)
    argv = [*TRAIN, "--train_dir", run_copy / "tr", "--dataset", "cifar10", "--data_dir", cifar_dir.parent]
    code, _, err = run_main(cifar10_train, argv, capsys)
    assert code == 2 and "already finished with other settings: training data digits" in err
    assert f"remove {run_copy / 'tr_0'}" in err and snapshot(run_copy) == before


def test_finished_stage_rerun_with_the_same_command_does_nothing(run_copy, capsys):
    before = snapshot(run_copy)
    code, out, _ = run_main(cifar10_train, [*TRAIN, "--train_dir", run_copy / "tr"], capsys)
    assert code == 0 and "Nothing to do" in out and snapshot(run_copy) == before


def test_resume_with_other_settings_is_refused(run_copy, capsys):
    unfinish(run_copy)
    before = snapshot(run_copy)
    code, _, err = run_main(cifar10_train, [*TRAIN, "--train_dir", run_copy / "tr", "--learning_rate", "0.05"], capsys)
    assert code == 2 and "was started with other settings: learning_rate=0.1 (now 0.05)" in err
    assert snapshot(run_copy) == before


def test_resume_on_other_data_is_refused_at_the_chain_level(run_copy):
    unfinish(run_copy)
    started = chain.read_json(run_copy / "tr_0" / "stage.json", "")
    other = {**started["data"], "sha256_16": "0" * 16, "source": "elsewhere"}
    with pytest.raises(chain.UserError, match=r"training data digits n=\d+ from .* \(now digits n=\d+ from elsewhere"):
        chain.check_stage_can_run(run_copy / "tr", 0, started["settings"], other)


def test_a_stage_file_without_checkpoints_binds_nothing(tmp_path):
    """A first run that stopped before its first save (diverged at once) leaves stage.json only: the
    corrected command starts afresh instead of being refused for other settings."""
    chain.write_json(tmp_path / "tr_0" / "stage.json", {"settings": {"learning_rate": 1e9}, "data": {}})
    assert chain.check_stage_can_run(tmp_path / "tr", 0, {"model": "cnn4", "learning_rate": 0.1}, {}) is None


@pytest.mark.parametrize(
    "tf_config, chief",
    [
        (None, True),
        ({"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 0}}, True),
        ({"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}, False),
        ({"cluster": {"chief": ["c:0"], "worker": ["a:1"]}, "task": {"type": "worker", "index": 0}}, False),
        ({"cluster": {"chief": ["c:0"], "worker": ["a:1"]}, "task": {"type": "chief", "index": 0}}, True),
    ],
)
def test_only_the_chief_task_locks_the_folder(monkeypatch, tf_config, chief):
    import json

    if tf_config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", json.dumps(tf_config))
    assert chain.chief_task() is chief


def test_busy_run_folder_names_the_holding_process(run_copy, capsys):
    unfinish(run_copy)
    before = snapshot(run_copy)
    with paths.RunFolderLock(run_copy / "tr_0", "stage 0"):
        code, _, err = run_main(cifar10_train, [*TRAIN, "--train_dir", run_copy / "tr"], capsys)
        assert snapshot(run_copy) == before
    assert code == 2 and f"{run_copy / 'tr_0'} is in use by process {os.getpid()} on " in err


# ----------------------------------------------------------------------------------------------------
# 5. Records by default, with the variant keys the README rows name
# ----------------------------------------------------------------------------------------------------


def test_eval_writes_a_record_under_the_train_dir_by_default(run_copy, capsys):
    code, out, err = run_main(cifar10_eval, [*EVAL, "--train_dir", run_copy / "tr"], capsys)
    assert code == 0, err
    records, _ = find_records([run_copy])
    evals = [r for _, r in records if "checkpoint_version" in r["config"] and "lineage" in r["config"]]
    assert len(evals) == 1 and f"run record: {run_copy / 'tr_1' / 'records' / 'ista'}" in out
    variant = evals[0]["variant"]
    assert (variant["bn_decay"], variant["precision"], variant["accum_steps"]) == (0.9, "float32", 1)
    assert evals[0]["kind"] == "smoke" and evals[0]["row"] is None


def readme_lineage(penalties, rates, **changes):
    base = {**chain.README_FIXED, "max_steps": 0}
    return [
        {
            "settings": {
                **base,
                "l1_penalty": p,
                "learning_rate": lr,
                "max_steps": chain.README_CHAIN[v][1],
                **changes,
            },
            "data": {"name": "cifar10", "n": chain.FULL_CIFAR10["train"]},
        }
        for v, (p, lr) in enumerate(zip(penalties, rates))
    ]


def test_readme_rows_and_the_faithful_settings():
    readme = readme_lineage((0.001, 0.005, 0.0), (0.1, 0.1, 0.01))
    assert chain.readme_chain_matches(readme) and chain.readme_row("resnet20", 3, readme).endswith("/v3")
    assert chain.readme_row("resnet20", 2, readme[:2]).endswith("/v2")
    model_b = readme_lineage((0.001, 0.005, 0.01), (0.1, 0.1, 0.1))  # the paper's model B: sparsifies again
    assert chain.readme_row("resnet20", 3, model_b) is None and not chain.readme_chain_matches(model_b)
    # ... filed under the paper's own model-b row, a reproduction when run in full
    assert chain.reported_row("resnet20", 3, model_b) == "paper/cifar10/resnet20/model-b"
    assert chain.chain_matches("paper/cifar10/resnet20/model-b", model_b)
    assert not chain.chain_matches("paper/cifar10/resnet20/model-b", readme)
    assert chain.reported_row("resnet20", 3, readme) == "readme/cifar10/resnet20/v3"
    convnet = readme_lineage((0.0002, 0.001, 0.002), (0.01, 0.01, 0.01), model="cnn4")
    assert chain.reported_row("cnn4", 2, convnet[:2]) == "paper/cifar10/convnet/model-a"
    assert chain.reported_row("cnn4", 3, convnet) == "paper/cifar10/convnet/model-b"
    assert chain.chain_matches("paper/cifar10/convnet/model-b", convnet) and not chain.readme_chain_matches(convnet)
    smoke_b = readme_lineage((0.001, 0.3, 0.6), (0.1, 0.1, 0.1), max_steps=30)  # SMOKE=1 ista-paper
    assert chain.reported_row("resnet20", 3, smoke_b) == "paper/cifar10/resnet20/model-b"
    assert not chain.chain_matches("paper/cifar10/resnet20/model-b", smoke_b)
    assert chain.reported_row("resnet20", 1, readme[:1]) is None  # no row for version 1
    assert chain.reported_row("cnn4", 3, readme_lineage((0.0002, 0.001, 0.0), (0.01,) * 3, model="cnn4")) is None
    for change in ({"bn_decay": 0.9}, {"precision": "mixed_bfloat16"}, {"accum_steps": 5}):
        assert not chain.readme_chain_matches(readme_lineage((0.001, 0.005, 0.0), (0.1, 0.1, 0.01), **change))


# ----------------------------------------------------------------------------------------------------
# 6. Help and flag spellings
# ----------------------------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:'ista_tf.*' found in sys.modules:RuntimeWarning")
@pytest.mark.parametrize("module", ["ista_tf.chain", "ista_tf.prune"])
def test_library_modules_say_they_are_not_commands(module):
    with pytest.raises(SystemExit) as exit_:
        runpy.run_module(module, run_name="__main__")
    assert f"{module} is a library module" in str(exit_.value.code) and "cifar10_train" in str(exit_.value.code)


@pytest.mark.parametrize("module", [cifar10_train, cifar10_eval, demo])
def test_data_dir_in_both_spellings(module):
    extra = ["--out", "x"] if module is demo else []
    for flag in ("--data_dir", "--data-dir"):
        assert module.build_parser().parse_args([flag, "/d", *extra]).data_dir == "/d"


ENTRY_POINTS = ("cifar10_train", "cifar10_eval", "export", "bench", "demo")
# every entry point's --help in ONE fresh interpreter (TensorFlow starts once): its exit status after a
# marker line, so that the output of each can be told apart
HELP_ALL = """
import importlib, sys
for name in sys.argv[1:]:
    print(f"@@ {name}", flush=True)
    try:
        importlib.import_module(f"ista_tf.{name}").main(["--help"])
    except SystemExit as exit_:
        print(f"@@ exit {exit_.code}", flush=True)
"""


UNSUPPRESSIBLE = re.compile(r"All log messages before absl::InitializeLog|port\.cc:\d+\] oneDNN custom operations are on")


@pytest.mark.slow  # a fresh interpreter: TensorFlow's start-up, about 5 s on an idle core
def test_help_has_no_tensorflow_log_lines():
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    proc = subprocess.run(
        [sys.executable, "-c", HELP_ALL, *ENTRY_POINTS], cwd=REPO, env=env, capture_output=True, text=True
    )
    # no start-up lines but the two that some TensorFlow builds print before any log level applies
    # (measured the same with TF_CPP_MIN_LOG_LEVEL=3): absl's pre-init notice and the oneDNN line
    noise = [line for line in proc.stderr.splitlines() if not UNSUPPRESSIBLE.search(line)]
    assert proc.returncode == 0 and noise == []
    outputs = proc.stdout.split("@@ ")[1:]
    assert len(outputs) == 2 * len(ENTRY_POINTS)
    for name, text, status in zip(ENTRY_POINTS, outputs[::2], outputs[1::2]):
        head, _, body = text.partition("\n")
        assert head == name and status.strip() == "exit 0", (name, status)
        assert body.startswith(f"usage: python -m ista_tf.{name}") and "--" in body, name


def test_paper_script_ends_with_a_results_check():
    env = {**os.environ, "DRY_RUN": "1", "SMOKE": "1"}
    out = subprocess.run(
        ["bash", str(REPO / "scripts" / "ista" / "paper_settings.sh")], env=env, capture_output=True, text=True
    ).stdout
    assert out.strip().splitlines()[-1].startswith("+ ") and "-m shared.results check" in out.strip().splitlines()[-1]
