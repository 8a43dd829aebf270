"""What the entry points run once their flags are checked (TensorFlow is imported here)."""

from __future__ import annotations

import json
import math
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np

from dcp_tf import checkpoints, cli, data, dcp, train
from dcp_tf import flops as dflops
from dcp_tf.checkpoints import folder_of
from dcp_tf.models import ResNet
from shared import tf_train
from shared.data import load_image_classification
from shared.errors import UserError
from shared.paths import DATA_ENV, data_root
from shared.results import make_record, write_record


def load_splits(args, dataset: str):
    if dataset == "ilsvrc12":
        root = data_root(args.data_dir)
        if root is None:
            raise UserError(
                f"ILSVRC-12 needs --data_dir (or ${DATA_ENV}): a folder with train/ and val/ (class folders, "
                "or train.lmdb / val.lmdb from `python -m shared.data folder2lmdb`)"
            )
        return data.imagenet_splits(root, args.image_size)
    name = args.dataset_name
    return (
        load_image_classification(name, "train", args.data_dir),
        load_image_classification(name, "test", args.data_dir),
    )


def model_helper_fields(args, dataset: str) -> dict:
    """The ModelHelper's schedule and the machinery flags, common to both learners' configs."""
    h = cli.MODEL_DEFAULTS[dataset]
    names = ("batch_size", "lrn_rate_init", "batch_size_norm", "momentum", "loss_w_dcy", "nb_epochs_rat",
             "save_step", "seed", "accum_steps", "xla", "bn_decay")  # fmt: skip
    return {**{k: getattr(args, k) for k in names}, "nb_epochs": h["nb_epochs"], "lr_epochs": h["lr_epochs"]}


def dcp_config(args, dataset: str) -> dcp.DcpConfig:
    h = cli.MODEL_DEFAULTS[dataset]
    return dcp.DcpConfig(
        variant=args.dcp_variant,
        prune_ratio=args.dcp_prune_ratio,
        nb_stages=args.dcp_nb_stages,
        lrn_rate_adam=args.dcp_lrn_rate_adam,
        nb_iters_block=args.dcp_nb_iters_block,
        nb_iters_layer=args.dcp_nb_iters_layer,
        enbl_dst=args.enbl_dst,
        loss_w_dst=args.loss_w_dst,
        tempr_dst=args.tempr_dst,
        paper_stage_epochs=args.dcp_paper_stage_epochs,
        paper_stage_lr=h["paper_lr"],
        paper_select_samples=args.dcp_paper_select_samples,
        paper_final_epochs=args.dcp_paper_final_epochs,
        paper_final_lr_epochs=h["paper_final_lr_epochs"],
        save_every_picks=args.dcp_save_every_picks,
        summ_step=max(args.summ_step, 0),
        **model_helper_fields(args, dataset),
    )


def full_prec_config(args, dataset: str, fam: str) -> train.FullPrecConfig:
    return train.FullPrecConfig(
        family=fam,
        dataset=dataset,
        resnet_size=args.resnet_size,
        nb_iters_train=args.nb_iters_train,
        summ_step=args.summ_step,
        **model_helper_fields(args, dataset),
    )


def data_identity(split) -> dict:
    return {"name": split.name, "split": split.split, "n": len(split), "source": split.source}


def row_key(fam: str, args, n_train: int) -> tuple[str | None, str]:
    """(reported row, kind): a reproduction only with the paper's settings on the full CIFAR-10."""
    full = n_train == 50000 and args.nb_epochs_rat == 1.0
    if fam == "paper" and args.dcp_variant == "paper" and args.resnet_size == 56 and args.dcp_prune_ratio == 0.5:
        return "table1/cifar10/resnet56/dcp", "reproduction" if full and args.dcp_paper_final_epochs == 400 else "smoke"
    if (
        fam == "pocketflow"
        and args.dcp_variant == "pocketflow"
        and args.resnet_size == 20
        and args.dcp_prune_ratio == 0.5
    ):
        defaults = args.dcp_nb_iters_block == 10000 and args.dcp_nb_iters_layer == 500
        return "issue189/cifar10/resnet20/dcp", "reproduction" if full and defaults else "smoke"
    return None, "smoke"


def main(args, dataset: str) -> int:
    strategy = cli.strategy_for(args)
    tf_train.set_seed(args.seed)
    fam = cli.family(args)
    arch = {"family": fam, "dataset": dataset, "size": args.resnet_size}
    net = ResNet(**arch)  # a bad resnet_size or dcp_nb_stages fails here, before any data is read
    if args.learner == "dis-chn-pruned":
        dcp.make_stages(net, args.dcp_variant, args.dcp_nb_stages)
    train_split, test_split = load_splits(args, dataset)
    if args.learner == "full-prec":
        return full_prec_main(args, dataset, fam, strategy, train_split, test_split)
    return dcp_main(args, dataset, fam, strategy, train_split, test_split)


def full_prec_main(args, dataset, fam, strategy, train_split, test_split) -> int:
    folder, eval_folder = folder_of(args.save_path), folder_of(args.save_path_eval)
    if args.exec_mode == "eval":
        model, _ = checkpoints.load_model(eval_folder if checkpoints.has_model(eval_folder) else folder)
        print(json.dumps(train.evaluate(model, test_split, args.batch_size_eval)))
        return 0
    cfg = full_prec_config(args, dataset, fam)
    with tf_train.MetricsWriter(folder, events_dir=args.log_dir, enabled=tf_train.is_chief(strategy)) as writer:
        res = train.full_prec(cfg, train_split, folder, strategy, metrics=writer)
    model = res["model"]
    if not checkpoints.has_model(eval_folder):
        checkpoints.save_model(eval_folder, model, {"learner": "full-prec", "from": str(folder)})
    ev = train.evaluate(model, test_split, args.batch_size_eval)
    counts = dflops.count(model)
    summary = {
        "learner": "full-prec",
        "top1": ev["top1"],
        "loss": ev["loss"],
        "steps": res["steps"],
        "replicas": strategy.num_replicas_in_sync,
        "params": counts.params,
        "macs": counts.macs,
        "save_path": str(folder),
    }
    if args.records:
        rec = make_record(
            paper="dcp",
            row=None,
            kind="smoke",
            metrics={"top1": 100 * ev["top1"], "params": counts.params, "macs": counts.macs, "steps": res["steps"]},
            data=data_identity(test_split),
            variant={"method": "dense", "implementation": fam, "learner": "full-prec"},
            convention=dflops.CONVENTION,
            seed=args.seed,
            config=asdict(cfg),
            timings={"train_seconds": res["train_seconds"]},
            frameworks=("tensorflow",),
            device=tf_train.device_kind(),
            run_dir=str(folder),
            env_extra={"strategy": tf_train.describe(strategy)},
        )
        write_record(rec, args.records)
    print(json.dumps(summary))
    return 0


def load_pretrained(args, dataset, fam) -> ResNet:
    folder = folder_of(args.save_path)
    if not checkpoints.has_model(folder):
        raise UserError(
            f"no pre-trained model in {folder} (from --save_path {args.save_path}); train one first with "
            f"`python -m dcp_tf.resnet_at_{dataset}_run --learner full-prec --resnet_size {args.resnet_size} "
            f"--resnet_def {fam} --save_path {args.save_path}` (PocketFlow downloaded its own models)"
        )
    model = ResNet(fam, dataset, args.resnet_size, seed=args.seed)
    checkpoints.restore_into(model, folder, "pre-trained model")
    return model


def dcp_main(args, dataset, fam, strategy, train_split, test_split) -> int:
    eval_folder = folder_of(args.dcp_save_path_eval)
    if args.exec_mode == "eval":
        model, info = checkpoints.load_model(eval_folder)
        print(json.dumps({**train.evaluate(model, test_split, args.batch_size_eval), **dflops.zero_ratios(model)}))
        return 0
    pretrained = load_pretrained(args, dataset, fam)
    if checkpoints.has_model(eval_folder):
        print(
            f"a finished DCP model is already in {eval_folder}; nothing to do (pass another --dcp_save_path_eval "
            "for a new run: finished results are never overwritten)",
            file=sys.stderr,
        )
        return 0
    cfg = dcp_config(args, dataset)
    writer = tf_train.MetricsWriter(folder_of(args.dcp_save_path), events_dir=args.log_dir,
                                    enabled=tf_train.is_chief(strategy))  # fmt: skip
    learner = dcp.DcpLearner(
        cfg,
        pretrained,
        train_split,
        folder_of(args.dcp_save_path),
        strategy,
        log=lambda line: print(line, file=sys.stderr),
        metrics=writer,
    )
    base = train.evaluate(pretrained, test_split, args.batch_size_eval)
    with writer:
        result = learner.run(pretrained if args.enbl_dst else None)
    model = learner.pruned
    ev = train.evaluate(model, test_split, args.batch_size_eval)
    counts, dense = dflops.count(model), dflops.count(pretrained)
    zeros = dflops.zero_ratios(model)
    summary = {
        "learner": "dis-chn-pruned",
        "dcp_variant": cfg.variant,
        "resnet_def": fam,
        "resnet_size": args.resnet_size,
        "dcp_prune_ratio": cfg.prune_ratio,
        "replicas": strategy.num_replicas_in_sync,
        "iters_block": learner._iters(cfg.nb_iters_block),
        "baseline_top1": base["top1"],
        "top1": ev["top1"],
        "top1_drop": 100 * (base["top1"] - ev["top1"]),
        "params": counts.params,
        "macs": counts.macs,
        "params_reduction_x": dense.params / counts.params,
        "flops_reduction_x": dense.macs / counts.macs,
        "nonzero_in_pruned_slices": train.exact_zero_check(model),
        **zeros,
        "kept": train.kept_summary(model),
    }
    checkpoints.save_model(
        eval_folder, model, {"learner": "dis-chn-pruned", **{k: v for k, v in summary.items() if k != "kept"}}
    )
    if not args.no_export:
        from dcp_tf import export

        paths = export.export_all(model, eval_folder)
        summary["export"] = {k: str(v) for k, v in paths.items()}
    if args.records:
        row, kind = row_key(fam, args, len(train_split))
        metrics = {
            k: summary[k]
            for k in ("top1", "params", "macs", "params_reduction_x", "flops_reduction_x", "pr_trn", "pr_msk")
        }
        metrics.update(
            top1=100 * ev["top1"],  # percent, as the reported tables
            top1_error=100 * (1 - ev["top1"]),
            baseline_top1_error=100 * (1 - base["top1"]),
            top1_drop=summary["top1_drop"],
        )
        metrics = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and math.isfinite(v)}
        rec = make_record(
            paper="dcp",
            row=row,
            kind=kind,
            metrics=metrics,
            data=data_identity(test_split),
            variant={
                "method": "DCP",
                "implementation": "authors-v1" if cfg.variant == "paper" else "pocketflow",
                "dcp_variant": cfg.variant,
                "network": fam,
                "pruning_rate": cfg.prune_ratio,
                "nb_stages": cfg.nb_stages,
                "enbl_dst": cfg.enbl_dst,
            },
            convention=dflops.CONVENTION,
            seed=args.seed,
            config=asdict(cfg),
            timings={"select_seconds": float(result.get("select_seconds", float("nan")))}
            if np.isfinite(result.get("select_seconds", float("nan")))
            else {},
            frameworks=("tensorflow",),
            device=tf_train.device_kind(),
            run_dir=str(folder_of(args.dcp_save_path)),
            env_extra={"strategy": tf_train.describe(strategy), "replicas": strategy.num_replicas_in_sync},
        )
        summary["record"] = str(write_record(rec, args.records))
    print(json.dumps(summary))
    return 0


__all__ = ["main", "Path"]
