"""The search stage (the original `pruning.py`): warm-up, EKG search, memory bank, slimming.

    python -m ekg_tf2.pruning --arch ResNet-56 --dataset CIFAR10 --search_target_rate 0.30 \\
        --trained_param res56_cifar10.pkl --train_path runs/ekg/test --data_dir DIR

1. D^subset / D^val from the training set (`ekg_tf2.data.search_subsets`).
2. Warm-up: one epoch over D^subset (lr 1e-3, Nesterov 0.9, wd 5e-4, CE, no augmentation), before the
   gates exist, so the BN moving statistics update only here. Saved as `warmup_params.pkl`.
3. The search (`ekg_tf2.search`), its state saved after every iteration (`search_state.pkl`): an
   interrupted search resumes at the next iteration.
4. The memory bank from the history without the final network (`<DATASET>_knowledge.npy`).
5. `slimmed_params.pkl`: the physically smaller network; its test accuracy printed with BN batch
   statistics (as the original) and moving averages. `search.json` marks the stage finished; a
   finished stage is not rerun (delete the folder, or pick another --train_path).
"""

from __future__ import annotations

import argparse
import io
import json
import pickle
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ekg_tf2 import cli, data, params
from ekg_tf2.flops import count, full_counts
from ekg_tf2.memory_bank import bank_path, build_memory_bank, select_teachers, write_memory_bank
from ekg_tf2.search import EKGSearch, SearchConfig
from ekg_tf2.train import FinetuneConfig, FineTuner, evaluate_split, use_xla
from shared import safe_pickle, tf_train
from shared.errors import UserError, main_guard
from shared.paths import atomic_write_bytes, atomic_write_text, checkpoint_root

WARMUP = {"learning_rate": 1e-3, "weight_decay": 5e-4, "momentum": 0.9}


def default_pretrained(arch: str, dataset: str) -> Path:
    root = checkpoint_root()
    if arch == "ResNet-56" and dataset == "CIFAR10" and root is not None:
        return root / "ekg" / "res56_cifar10.pkl"
    raise UserError(
        "no --trained_param given: pass the pre-trained params pkl (the authors' ResNet-56 is "
        "ekg/res56_cifar10.pkl in the checkpoint folder; set PRUNING_CHECKPOINT_DIR to find it there)"
    )


def warm_up(model, strategy, images: np.ndarray, labels: np.ndarray, dataset: str, batch: int, jit: bool, log) -> None:
    """One epoch of plain CE over D^subset (research/ekg.md 1.3), unaugmented, before the gates exist."""
    steps = max(len(labels) // batch, 1)
    batch = min(batch, len(labels))
    batches = (
        (data.normalize(images[s * batch : (s + 1) * batch], dataset), labels[s * batch : (s + 1) * batch])
        for s in range(steps)
    )
    warm_up_batches(model, strategy, batches, batch, jit, log)


def warm_up_batches(model, strategy, batches, batch: int, jit: bool, log) -> None:
    """The warm-up's updates over (normalised images, labels) batches of `batch` (a smaller one is dropped)."""
    cfg = FinetuneConfig(batch_size=batch, epochs=1, xla="off", **WARMUP)
    tuner = FineTuner(model, strategy, cfg, jit)
    loss, steps = 0.0, 0
    for x, y in batches:
        if int(x.shape[0]) != batch and steps:
            break
        loss = tuner.update(x, np.asarray(y, np.int32))["loss"]
        steps += 1
    log(f"warm-up: {steps} steps of {batch} over D^subset, last loss {loss:.4f}")


def _write_state(path: Path, state: dict) -> None:
    buf = io.BytesIO()
    pickle.dump(state, buf, protocol=4)
    atomic_write_bytes(path, buf.getvalue())


def _read_state(path: Path) -> dict:
    with open(path, "rb") as f:
        return safe_pickle.load(f)


def run_search_stage(args, log: Callable[[str], None] = print, on_iteration=None) -> dict:
    """Stages 1-5 above; returns the result dict (status 'searched' or 'finished-before')."""
    cli.check_common(args)
    train_path = Path(args.train_path)
    done = train_path / "search.json"
    if done.is_file():
        result = json.loads(done.read_text())
        log(f"search in {train_path} finished before ({100 * result['flops_rate']:.2f} % FLOPs kept); not rerun")
        return {**result, "status": "finished-before"}
    cfg = SearchConfig(
        search_target_rate=args.search_target_rate,
        search_step=args.search_step,
        search_batch_size=args.search_batch_size,
        max_iterations=args.max_search_iterations,
    )
    cfg.validate()
    pretrained = Path(args.trained_param) if args.trained_param else default_pretrained(args.arch, args.dataset)
    imagenet = args.dataset == "ILSVRC"
    if imagenet:
        from ekg_tf2 import imagenet as inet

        train, test = inet.load_splits(args.data_dir, args.image_size, None, args.test_limit)
    else:
        train = data.load_split(args.dataset, "train", args.data_dir)
        test = data.limited(data.load_split(args.dataset, "test", args.data_dir), args.test_limit)
    sub_idx, val_idx = data.search_subsets(train.labels, args.val_per_class, args.subset_per_class)
    strategy = tf_train.make_strategy(args.distribute)
    jit = use_xla(args.xla) and tf_train.xla_possible(strategy)
    tf_train.set_seed(args.seed)
    train_path.mkdir(parents=True, exist_ok=True)
    t0 = time.time()

    warm = train_path / "warmup_params.pkl"
    source = warm if warm.is_file() else pretrained
    weights = params.read_params(source)
    with strategy.scope():
        model = params.model_from_params(args.arch, args.dataset, weights, str(source))
    if source == pretrained and imagenet:
        batch = min(args.search_batch_size, len(sub_idx))
        warm_up_batches(model, strategy, train.batches(batch, sub_idx), batch, jit, log)
        if tf_train.is_chief(strategy):
            params.write_params(warm, params.model_params(model))
    elif source == pretrained:
        warm_up(
            model,
            strategy,
            train.images[sub_idx],
            train.labels[sub_idx],
            args.dataset,
            args.search_batch_size,
            jit,
            log,
        )
        if tf_train.is_chief(strategy):
            params.write_params(warm, params.model_params(model))
    else:
        log(f"warm-up done before: loaded {warm}")
    t_warm = time.time() - t0

    if imagenet:  # preprocessed once into a memory-mapped file: the search passes over it many times
        cache = train_path / "search_val.npy" if tf_train.is_chief(strategy) else Path(tempfile.mkdtemp()) / "v.npy"
        val_x = train.cache(val_idx, cache, args.search_batch_size)
    else:
        val_x = data.normalize(train.images[val_idx], args.dataset).numpy()
    search = EKGSearch(model, strategy, val_x, train.labels[val_idx], cfg, jit_compile=jit, log=log)
    state_file = train_path / "search_state.pkl"
    if state_file.is_file():
        search.restore(_read_state(state_file))
        log(f"search resumed at iteration {search.iteration} ({100 * search.flops_rate():.2f} % FLOPs kept)")

    def saved(info):
        if tf_train.is_chief(strategy):
            _write_state(state_file, search.state())
        if on_iteration is not None:
            on_iteration(info)

    if not search.history:
        search.start()
        if tf_train.is_chief(strategy):
            _write_state(state_file, search.state())
    log(
        f"search: {args.arch} on {len(val_idx)} D^val images, target {100 * cfg.search_target_rate:.1f} % FLOPs kept "
        f"of {search.ori_flops / 1e6:.2f} M, {len(model.gates)} gates, {tf_train.describe(strategy)}"
    )
    search.run(saved)
    t_search = time.time() - t0 - t_warm

    # memory bank from the interim sub-networks (the final one is not a teacher)
    final = search.history[-1]
    interim = search.history[:-1] or search.history
    teachers = select_teachers([h["loss"] for h in interim], args.num_teacher)
    bank = bank_path(train_path, args.dataset)
    # every worker takes part in the collective forward passes; only the chief's copy is kept
    target = bank if tf_train.is_chief(strategy) else Path(tempfile.mkdtemp(prefix="ekg-bank-")) / bank.name
    if imagenet:
        n = len(train) if args.train_limit is None else min(args.train_limit, len(train))
        bank_batches = (x for x, _ in train.batches(args.search_batch_size, np.arange(n)))
        write_memory_bank(search, bank_batches, n, target, teachers, log)
    else:
        bank_images = data.limited(train, args.train_limit).images
        build_memory_bank(search, bank_images, args.dataset, target, teachers, args.search_batch_size, log)
    search.apply_mask_state(final)

    slim = params.slim(model)
    slimmed = params.model_from_params(args.arch, args.dataset, slim, "slimmed network")
    counts, base = count(slimmed), full_counts(args.arch, args.dataset)
    acc = {m: evaluate_split(slimmed, test, args.dataset, m) for m in ("batch-stats", "moving-average")}
    if tf_train.is_chief(strategy):
        params.write_params(train_path / "slimmed_params.pkl", slim)
    result = {
        "arch": args.arch,
        "dataset": args.dataset,
        "search_target_rate": cfg.search_target_rate,
        "iterations": search.iteration,
        "flops": counts.macs,
        "params": counts.params,
        "ori_flops": base.macs,
        "ori_params": base.params,
        "flops_rate": counts.macs / base.macs,
        "widths": {g: int(k) for g, k in final["kept"].items()},
        "teachers": teachers,
        "teacher_losses": [interim[t]["loss"] for t in teachers],
        "val_loss": final["loss"],
        "val_acc": final["acc"],
        "test_top1_batch_stats": acc["batch-stats"]["top1"],
        "test_top1_moving_average": acc["moving-average"]["top1"],
        "seconds_warmup": t_warm,
        "seconds_search": t_search,
        "seconds_per_iteration": float(np.mean(search.seconds)) if search.seconds else 0.0,
        "d_val": len(val_idx),
        "d_subset": len(sub_idx),
        "memory_bank": str(bank),
        **({"recipe": "inferred", "image_size": args.image_size} if imagenet else {}),
    }
    log(
        f"pruned {args.arch}: {100 * result['flops_rate']:.2f} % FLOPs kept ({counts.macs / 1e6:.2f} M of "
        f"{base.macs / 1e6:.2f} M), {counts.params / 1e6:.3f} M params, {search.iteration} iterations "
        f"({result['seconds_per_iteration']:.1f} s each); test top-1 {acc['batch-stats']['top1']:.2f} % "
        f"(BN batch statistics), {acc['moving-average']['top1']:.2f} % (moving averages)"
    )
    if tf_train.is_chief(strategy):
        atomic_write_text(done, json.dumps(result, indent=1) + "\n")
    return {**result, "status": "searched", "search": search, "model": model, "slimmed": slimmed}


def build_parser(target_default: float = 0.30, prog: str = "python -m ekg_tf2.pruning") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=cli.HelpFormatter)
    cli.add_common_flags(p)
    cli.add_search_flags(p, target_default)
    return p


@main_guard
def main(argv=None) -> int:
    run_search_stage(build_parser().parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
