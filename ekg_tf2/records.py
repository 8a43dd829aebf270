"""Run records (shared results schema) of the EKG entry points, matched to `shared/results/reported/ekg.yaml`.

Fine-tuning runs of ResNet-56 on CIFAR map to the poster's ablation rows: the default (no memory bank)
to `ablation/<dataset>/resnet56/ensemble-none`, `--Knowledge` to `.../ensemble-ensemble`. A run is a
`reproduction` only with the full recipe (the whole training set, 100 epochs, no step cap, the README
target 0.45); anything smaller is a `smoke` record, never compared with the paper. The authors'
ResNet-56 evaluated by `ekg_tf2.test` is a `released-model` record of the baseline row. ResNet-50 on
ILSVRC with `--Knowledge` at 0.55 / 0.45 kept maps to the poster's 45 % / 55 % rows, its recipe marked
inferred (`variant.recipe`).
"""

from __future__ import annotations

from shared.results import make_record, write_record

CONVENTION = "ekg-code"
FULL_TRAIN = {"CIFAR10": 50_000, "CIFAR100": 50_000, "ILSVRC": 1_281_167}
IMAGENET_ROWS = {0.55: "imagenet/resnet50/ekg/flops-45", 0.45: "imagenet/resnet50/ekg/flops-55"}  # kept -> row


def _variant(args, knowledge: str, bn_eval: str) -> dict:
    return {
        "method": "EKG",
        "search_knowledge": "ensemble",
        "finetune_knowledge": knowledge,
        "memory_bank": knowledge == "ensemble",
        "search_target_rate": getattr(args, "search_target_rate", None),
        "bn_eval": bn_eval,
        # the ImageNet recipe was never released: ekg_tf2.imagenet's is inferred
        **({"recipe": "inferred", "image_size": args.image_size} if args.dataset == "ILSVRC" else {}),
    }


def _row(arch: str, dataset: str, knowledge: str, rate: float | None = None) -> str | None:
    if dataset == "ILSVRC" and arch == "ResNet-50" and knowledge == "ensemble" and rate in IMAGENET_ROWS:
        return IMAGENET_ROWS[rate]
    if arch != "ResNet-56" or dataset not in FULL_TRAIN:
        return None
    return f"ablation/{dataset.lower()}/resnet56/ensemble-{knowledge}"


def write_finetune_record(args, result: dict, search: dict | None, train_split, test_split, log=print):
    knowledge = result["knowledge"]
    s = result["settings"]
    full = (
        len(train_split) == FULL_TRAIN.get(args.dataset)
        and s["epochs"] == 100
        and s["max_steps"] is None
        and s["steps_per_epoch"] is None
        and search is not None
        and (
            abs(search.get("search_target_rate", 0) - 0.45) < 1e-9
            or (args.dataset == "ILSVRC" and search.get("search_target_rate") in IMAGENET_ROWS)
        )
    )
    metrics = {"top1": result["top1"], "top5": result["top5"], "params": result["params"], "flops": result["flops"]}
    if search is not None:
        metrics.update(
            flops_reduction_pct=100.0 * (1 - result["flops"] / search["ori_flops"]),
            params_reduction_pct=100.0 * (1 - result["params"] / search["ori_params"]),
            search_seconds=search["seconds_search"],
            search_iterations=search["iterations"],
        )
        if getattr(args, "search_target_rate", None) is None:
            args.search_target_rate = search["search_target_rate"]
    rec = make_record(
        "ekg",
        _row(args.arch, args.dataset, knowledge, (search or {}).get("search_target_rate")),
        "reproduction" if full else "smoke",
        metrics=metrics,
        data={**test_split.identity(), "train_n": len(train_split), "train_sha256_16": train_split.fingerprint()},
        variant=_variant(args, knowledge, "moving-average"),
        convention=CONVENTION,
        seed=args.seed,
        config={"args": vars(args), "settings": s, "search": search},
        timings={"finetune_s": result["seconds"], **({"search_s": search["seconds_search"]} if search else {})},
        frameworks=("tensorflow",),
        run_dir=str(args.train_path),
    )
    path = write_record(rec, args.records)
    log(f"run record: {path}")
    return path


def write_test_record(args, out: dict, test_split, log=print):
    """The released model's accuracy, one record per BN mode measured."""
    paths = []
    for mode in ("moving-average", "batch-stats"):
        if mode not in out:
            continue
        ev = out[mode]
        released = args.arch == "ResNet-56" and args.dataset == "CIFAR10" and "res56_cifar10" in str(args.trained_param)
        rec = make_record(
            "ekg",
            "ablation/cifar10/resnet56/baseline" if released else None,
            "released-model" if released else "smoke",
            metrics={"top1": ev["top1"], "top5": ev["top5"], "params": out["params"], "flops": out["flops"]},
            data=test_split.identity(),
            variant={"method": "dense" if released else "EKG", "bn_eval": mode},
            convention=CONVENTION,
            config={"trained_param": str(args.trained_param), "val_batch_size": args.val_batch_size},
            frameworks=("tensorflow",),
        )
        paths.append(write_record(rec, args.records))
        log(f"run record: {paths[-1]}")
    return paths
