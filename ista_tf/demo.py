"""Demo stage of `make demo`: a short v0 -> v1 -> v2 -> v3 chain, printing per version the sparsity, the
parameter count and the accuracy, and writing smoke run records.

    python -m ista_tf.demo [--data-dir DIR] --out DIR [--records DIR]

Data: CIFAR-10 from --data-dir (or $PRUNING_DATA_DIR), else the embedded digits. The chain is the
README's in miniature (resnet20, batch 32): warm-up with a small penalty, sparsification with a
penalty large enough to zero scales within a hundred steps, fine-tuning at lr 0.01 without penalty.
About a minute on 2 CPU cores. These are smoke numbers, never compared with the paper.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ista_tf import chain, cifar10_eval, train
from shared.data import load_image_classification
from shared.demo_data import demo_dataset
from shared.errors import main_guard

# (version, l1_penalty, max_steps, learning_rate): README chain 0.001 / 0.005 / 0.0 at 30k / 50k / 50k steps
STAGES = ((0, 0.001, 100, 0.1), (1, 0.1, 100, 0.1), (2, 0.0, 60, 0.01))
BATCH = 32
BN_DECAY = 0.9  # moving statistics usable after a few hundred steps (slim's 0.999 needs thousands)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m ista_tf.demo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--data-dir",
        "--data_dir",
        default=None,
        help="folder holding CIFAR-10 (default: $PRUNING_DATA_DIR, else digits)",
    )
    p.add_argument("--out", required=True, help="folder for the chain (<out>/cifar10_train_V)")
    p.add_argument("--records", default=None, help="folder for the smoke run records")
    return p


@main_guard
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    name = demo_dataset(args.data_dir)
    train_split = load_image_classification(name, "train", args.data_dir)
    test_split = load_image_classification(name, "test", args.data_dir)
    prefix = Path(args.out) / "cifar10_train"
    quiet = lambda line: None  # noqa: E731 - the per-stage table below says what matters
    t0 = time.time()
    print(
        f"ista_tf demo on {name} ({len(train_split)} train / {len(test_split)} test images), resnet20, "
        f"batch {BATCH}, chain in {prefix}_V"
    )
    rows = []
    for version, l1, steps, lr in STAGES:
        cfg = train.StageConfig(
            l1_penalty=l1,
            max_steps=steps,
            learning_rate=lr,
            batch_size=BATCH,
            bn_decay=BN_DECAY,
            log_frequency=steps,
        )
        stage = train.run_stage(cfg, prefix, version, train_split, records_dir=args.records, log=quiet)
        if stage["status"] != "trained":  # an --out of an earlier demo: show what that run produced
            print(stage["message"])
            stage = chain.read_json(chain.stage_dir(prefix, version) / "finished.json", "the stage result")["result"]
        ev = cifar10_eval.run_eval(prefix, version + 1, "resnet20", test_split, records_dir=args.records, log=quiet)
        rows.append(
            (
                f"v{version + 1}",
                f"stage {version}: rho {l1}, {steps} steps, lr {lr}",
                stage["zero_gammas"],
                stage["fake_sparsity"],
                ev["params"],
                stage["params_reduction_pct"],
                ev["precision_at_1"],
                ev["test_loss"],
                ev["widths"],
            )
        )
    print(
        f"{'version':8}{'trained by':34}{'zero gammas':>12}{'fake sparsity':>15}{'total params':>14}"
        f"{'reduction':>11}{'precision@1':>13}{'test loss':>11}  c0 widths"
    )
    for v, how, zeros, fake, params, red, top1, loss, widths in rows:
        print(f"{v:8}{how:34}{zeros:>12}{fake:>15.2f}{params:>14,}{red:>10.1f}%{top1:>13.4f}{loss:>11.4f}  {widths}")
    print(
        f"(ista_tf demo: {time.time() - t0:.0f} s; smoke numbers, not the paper's: the README chain is "
        "30k + 50k + 50k steps at batch 125)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
