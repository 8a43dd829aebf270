"""The checkpoint-version chain of the original programs (research/ista.md 2.7), and its folders.

`--checkpoint_version V` trains stage V in `<train_dir>_V` and writes the compact model for the next
stage into `<train_dir>_{V+1}`; `cifar10_eval --checkpoint_version N` evaluates `<train_dir>_N`:

    <train_dir>_V/
      compact/               input of stage V (V >= 1): arch.json, model checkpoint, lineage.json
      stage.json             settings of stage V, written when it starts (a resume must match them)
      train/                 checkpoints of stage V (model, averaged weights, step), newest 3
      pruned_channels.json   channels kept at the end of stage V (the original's pruned_flow_graph.pkl)
      record.json            run record of stage V
      finished.json          written last: stage V is done

Every stage starts from the averaged (EMA) weights of the previous one, with a fresh average and the
step reset to 0, so `--max_steps` counts per stage. The compact model is written to a temporary folder
and renamed into place, so `<train_dir>_{V+1}/compact` exists only when complete.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import tensorflow as tf

from shared.errors import MalformedError, UserError, WriteFailed
from shared.paths import atomic_write_text, ensure_folder, write_failure

# Settings that define a stage: a resume must use the same, and a finished stage is "the same run" only
# if these match (plus max_steps, which a resume may change to train longer).
DEFINING = (
    "model",
    "l1_penalty",
    "learning_rate",
    "batch_size",
    "weight_decay",
    "alpha",
    "fold",
    "seed",
    "accum_steps",
    "squeeze_model",
    "bn_decay",
)

# The README chain (seed README; research/ista.md 4.1): version -> (l1_penalty, max_steps, learning_rate)
README_CHAIN = {0: (0.001, 30_000, 0.1), 1: (0.005, 50_000, 0.1), 2: (0.0, 50_000, 0.01)}
README_FIXED = {
    "model": "resnet20",
    "batch_size": 125,
    "weight_decay": 0.0005,
    "alpha": 1.0,
    "fold": "released-code",
    # what the README chain ran with and a run may change (shared/results/reported/ista.yaml names them)
    "bn_decay": 0.999,
    "precision": "float32",
    "accum_steps": 1,
}
FULL_CIFAR10 = {"train": 50_000, "test": 10_000}


def stage_dir(train_dir: str | os.PathLike, version: int) -> Path:
    return Path(f"{os.fspath(train_dir)}_{int(version)}")


def compact_dir(train_dir, version: int) -> Path:
    return stage_dir(train_dir, version) / "compact"


def read_json(path: Path, what: str) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise MalformedError(f"{path}: cannot read {what}: {err}") from err


def write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1, sort_keys=True) + "\n")


def differences(recorded: dict, requested: dict, keys) -> list[str]:
    return [
        f"{k}={recorded.get(k)!r} (now {requested.get(k)!r})"
        for k in keys
        if str(recorded.get(k)) != str(requested.get(k))
    ]


# ----------------------------------------------------------------------------------------------------
# Compact models: arch.json + checkpoint + lineage.json
# ----------------------------------------------------------------------------------------------------


def read_arch(folder: Path, expected_model: str) -> dict:
    """arch.json of a checkpoint folder; UserError if it holds the other model."""
    arch_file = folder / "arch.json"
    if not arch_file.is_file():
        raise UserError(f"{folder} has no arch.json: not a checkpoint written by ista_tf")
    arch = read_json(arch_file, "the architecture")
    if arch.get("model") != expected_model:
        raise UserError(
            f"{folder} holds a {arch.get('model')!r} model, but --model is {expected_model!r}; "
            f"pass --model {arch.get('model')} (or point --train_dir elsewhere)"
        )
    return arch


def restore_compact(model, folder: Path) -> None:
    """Load the weights of `<folder>/model` into `model` (built from the folder's arch.json)."""
    prefix = tf.train.latest_checkpoint(folder) or str(folder / "model")
    try:
        tf.train.Checkpoint(model=model).read(prefix).assert_consumed()
    except (tf.errors.OpError, AssertionError, ValueError, IndexError, KeyError, TypeError) as err:
        # a truncated or damaged checkpoint fails deep inside TensorFlow (often an IndexError)
        raise MalformedError(
            f"cannot restore the model in {folder}: the checkpoint is damaged or incomplete "
            f"({first_line(err)}); train the stage that wrote it again"
        ) from err


def first_line(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0][:200]}" if text else type(err).__name__


def restore_for_resume(keeper, log) -> str | None:
    """Restore the newest training checkpoint that loads (a `tf_train.CheckpointKeeper`); a damaged one
    (truncated by a full disk or a crash) is skipped with a note and the one before is used. Returns
    the path restored, or None when the folder holds none. UserError when none of them loads."""
    newest = keeper.latest
    if newest is None:
        return None
    candidates = [newest] + [p for p in reversed(keeper.manager.checkpoints) if p != newest]
    failures = []
    for path in candidates:
        try:
            keeper.checkpoint.restore(path).assert_existing_objects_matched()
        except (tf.errors.OpError, AssertionError, ValueError, IndexError, KeyError, TypeError) as err:
            failures.append(f"{Path(path).name} ({first_line(err)})")
            continue
        keeper.saved_step = int(path.rsplit("-", 1)[1])
        if failures:
            log(f"note: checkpoint {'; '.join(failures)} is damaged; resuming from {path} instead")
        return path
    raise MalformedError(
        f"no checkpoint in {keeper.directory} can be restored: {'; '.join(failures)}; remove "
        f"{Path(keeper.directory).parent} to train this stage afresh"
    )


def write_compact(model, folder: Path, lineage: list[dict]) -> None:
    """Write arch.json, the model checkpoint and lineage.json into a temporary folder, then rename it to
    `folder` (which must not exist)."""
    ensure_folder(folder.parent, "stage")
    tmp = folder.with_name(f".{folder.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        tf.train.Checkpoint(model=model).write(str(tmp / "model"))
        write_json(tmp / "arch.json", model.arch)
        write_json(tmp / "lineage.json", lineage)
        os.replace(tmp, folder)
    except OSError as err:  # a full disk, a read-only folder: nothing half-written stays behind
        shutil.rmtree(tmp, ignore_errors=True)
        raise write_failure(folder, err, "the compact model") from err
    except (tf.errors.ResourceExhaustedError, tf.errors.PermissionDeniedError) as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise WriteFailed(f"cannot write the compact model {folder}: {first_line(err)}") from err
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def read_lineage(folder: Path) -> list[dict]:
    path = folder / "lineage.json"
    return read_json(path, "the stage history") if path.is_file() else []


# ----------------------------------------------------------------------------------------------------
# Where a stage stands
# ----------------------------------------------------------------------------------------------------


def check_stage_can_run(train_dir, version: int, settings: dict, data: dict) -> str | None:
    """Decide, before anything is written, what running stage `version` means.

    `settings` are the stage's settings (StageConfig.settings()), `data` the training split's identity.
    Returns None (start or resume) or a message saying the stage is already finished with the same
    settings (nothing to do). Raises UserError when the stage is finished with other settings, when the
    previous stage's compact model is missing, when a folder holds the other model, or when an output
    of this stage exists although the stage is not finished.
    """
    here, nxt = stage_dir(train_dir, version), compact_dir(train_dir, version + 1)
    prev = compact_dir(train_dir, version)
    if version > 0 and prev.is_dir():
        read_arch(prev, settings["model"])  # the other model's checkpoint: say so first
    finished = here / "finished.json"
    if finished.is_file():
        done = read_json(finished, "the finished-stage marker")
        diff = differences(done.get("settings", {}), settings, DEFINING + ("max_steps",))
        diff += data_differences(done.get("data"), data)
        if diff:
            raise UserError(
                f"stage {version} in {here} is already finished with other settings: {', '.join(diff)}; "
                f"remove {here} (and {nxt.parent}) to train it again"
            )
        return (
            f"stage {version} is already finished ({finished}); its compact model is {nxt}. Nothing to do: "
            f"continue with --checkpoint_version {version + 1}, or remove {here} to train it again."
        )
    if nxt.exists() and is_own_output(nxt, version, settings, data):
        # this stage's own compact model, written before a failure (a full disk) stopped the run short of
        # finished.json: written again from the final checkpoint
        shutil.rmtree(nxt)
    if nxt.exists():
        raise UserError(
            f"{nxt} already exists but stage {version} in {here} is not finished; refusing to "
            f"overwrite it (remove it if it is left from another run)"
        )
    if version > 0 and not prev.is_dir():
        raise UserError(
            f"checkpoint version {version} needs the compact model of stage {version - 1} in {prev}, "
            f"which does not exist; run --checkpoint_version {version - 1} first"
        )
    stage_file = here / "stage.json"
    # a stage.json without any checkpoint (the first run stopped before its first save, e.g. diverged at
    # once) binds nothing: the stage starts afresh with the new settings
    if stage_file.is_file() and tf.train.latest_checkpoint(here / "train") is not None:
        started = read_json(stage_file, "the stage settings")
        diff = differences(started.get("settings", {}), settings, DEFINING)
        diff += data_differences(started.get("data"), data)
        if diff:
            raise UserError(
                f"stage {version} in {here} was started with other settings: {', '.join(diff)}; "
                f"use the same settings and data to resume it, or remove {here} to start again"
            )
    return None


def chief_task() -> bool:
    """Whether this process is the one that writes results, before a strategy exists: no multi-worker
    TF_CONFIG, its 'chief' task, or worker 0 of a cluster without a chief (as tf_train.is_chief)."""
    try:
        config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    except json.JSONDecodeError:
        return True  # make_strategy reports the malformed TF_CONFIG
    task, cluster = config.get("task") or {}, config.get("cluster") or {}
    if not task:
        return True
    if "chief" in cluster:
        return task.get("type") == "chief"
    return task.get("type") == "worker" and int(task.get("index", 0)) == 0


def is_own_output(folder: Path, version: int, settings: dict, data: dict) -> bool:
    """Whether the compact model in `folder` was written by stage `version` with these settings and data."""
    try:
        last = read_lineage(folder)[-1]
    except (MalformedError, IndexError, KeyError):
        return False
    if not isinstance(last, dict) or last.get("version") != version:
        return False
    return not differences(last.get("settings", {}), settings, DEFINING + ("max_steps",)) and not data_differences(
        last.get("data"), data
    )


def data_differences(recorded: dict | None, requested: dict) -> list[str]:
    """The training data (shared.data's identity: name, size, source, content hash) as a difference."""
    if recorded is None:
        return []  # written before the data identity was stored
    if recorded.get("sha256_16") == requested.get("sha256_16") and recorded.get("n") == requested.get("n"):
        return []
    return [
        f"training data {recorded.get('name')} n={recorded.get('n')} from {recorded.get('source')} "
        f"(now {requested.get('name')} n={requested.get('n')} from {requested.get('source')}, "
        f"content hash {recorded.get('sha256_16')} -> {requested.get('sha256_16')})"
    ]


def readme_chain_matches(lineage: list[dict]) -> bool:
    """True when `lineage` (stage summaries, oldest first) is the README's resnet20 chain on full CIFAR-10."""
    return _chain_matches(lineage, README_CHAIN, README_FIXED)


def _chain_matches(lineage: list[dict], stages: dict, fixed: dict) -> bool:
    for version, entry in enumerate(lineage):
        s = entry.get("settings", {})
        want = stages.get(version)
        if want is None or (s.get("l1_penalty"), s.get("max_steps"), s.get("learning_rate")) != want:
            return False
        if any(s.get(k) != v for k, v in fixed.items()):
            return False
        if entry.get("data", {}).get("name") != "cifar10" or entry.get("data", {}).get("n") != FULL_CIFAR10["train"]:
            return False
    return bool(lineage)


def readme_row(model: str, version: int, lineage: list[dict]) -> str | None:
    """The README row (v2: pruned, v3: fine-tuned) that version `version` is an instance of, or None.

    The chain must have the README's shape, whatever its step counts (a smoke run is still filed under
    its row, as kind 'smoke'): v0 and v1 sparsify (l1_penalty > 0) at the initial learning rate, and v3
    also fine-tunes without a penalty at a lower one. Another chain (the paper's model B: one more
    sparsifying stage) is not an instance of the README's v3."""
    if model != "resnet20" or version not in (2, 3) or len(lineage) != version:
        return None
    s = [entry.get("settings", {}) for entry in lineage]
    if not all((x.get("l1_penalty") or 0) > 0 for x in s[:2]):
        return None
    if version == 3 and not (
        s[2].get("l1_penalty") == 0 and s[2].get("learning_rate", 0) < s[1].get("learning_rate", 0)
    ):
        return None
    return f"readme/cifar10/resnet20/v{version}"


# The paper's other CIFAR-10 chains (scripts/ista/paper_settings.sh; research/ista.md 4.2), each version
# of which sparsifies again (l1_penalty > 0): row -> (model, {version: (l1_penalty, max_steps, lr)}).
# ResNet-20 model A is the README's v2. The paper gives no step counts after the 30k warm-up: 50k here.
PAPER_CHAINS = {
    "paper/cifar10/resnet20/model-b": ("resnet20", {**README_CHAIN, 2: (0.01, 50_000, 0.1)}),
    "paper/cifar10/convnet/model-a": ("cnn4", {0: (0.0002, 30_000, 0.01), 1: (0.001, 50_000, 0.01)}),
    "paper/cifar10/convnet/model-b": (
        "cnn4",
        {0: (0.0002, 30_000, 0.01), 1: (0.001, 50_000, 0.01), 2: (0.002, 50_000, 0.01)},
    ),
}


def paper_row(model: str, version: int, lineage: list[dict]) -> str | None:
    """The paper's model A/B row that version `version` is an instance of (by shape, as `readme_row`:
    as many stages as the row's chain, every one with l1_penalty > 0), or None."""
    if len(lineage) != version or not all((e.get("settings", {}).get("l1_penalty") or 0) > 0 for e in lineage):
        return None
    return next((row for row, (m, st) in PAPER_CHAINS.items() if m == model and len(st) == version), None)


def reported_row(model: str, version: int, lineage: list[dict]) -> str | None:
    """The reported row (the README's v2/v3, else the paper's model A/B) of version `version`, or None."""
    return readme_row(model, version, lineage) or paper_row(model, version, lineage)


def chain_matches(row: str | None, lineage: list[dict]) -> bool:
    """True when `lineage` ran the full settings of `row`'s chain on full CIFAR-10 (the README's chain
    unless `row` is one of the paper's model A/B rows)."""
    if row in PAPER_CHAINS:
        model, stages = PAPER_CHAINS[row]
        fixed = {k: v for k, v in README_FIXED.items() if k != "weight_decay"}  # cnn4 has no weight decay
        return _chain_matches(lineage, stages, {**fixed, "model": model})
    return readme_chain_matches(lineage)


if __name__ == "__main__":
    raise SystemExit(
        "ista_tf.chain is a library module (the stage folders of the chain), not a command: "
        "use python -m ista_tf.cifar10_train or python -m ista_tf.cifar10_eval"
    )
