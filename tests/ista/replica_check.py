"""Run by test_tf_train.py in a fresh interpreter (logical CPU devices must be set up before TF starts),
in the background while the other tests run: one ISTA update of resnet20 (SGD + weight decay + prox +
BN statistics + EMA) on one device, XLA-compiled on one device, without weight decay, and on 2 logical
CPU replicas, same global batch; then two stages of a cnn4 chain under MirroredStrategy. Prints one
JSON line: the largest differences and the stages' results.

One update, because the comparison is of arithmetic, not of chaos: after an update a pre-activation
can sit within 1e-8 of a ReLU kink, where float differences of summation order (1e-7) flip a gradient
term; a second step would then differ by ~1e-3 on one device alone under a 1e-9 perturbation."""

from __future__ import annotations

import json
import tempfile

from shared import tf_train

tf_train.use_logical_cpus(2)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from ista_tf.models import ResNet20  # noqa: E402
from ista_tf.train import IstaTrainer, StageConfig  # noqa: E402

GLOBAL_BATCH = 9  # split 4 + 5: the loss scaling and the batch-norm statistics must not care


LR = 0.1
# 100x the default weight decay: its share of the update, lr wd |W| (up to ~1e-3 here), is far above
# the 5e-5 replica tolerance, so a decay applied once per replica instead of once per update shows
WEIGHT_DECAY = 0.05


def run(strategy, weight_decay: float = WEIGHT_DECAY, jit_compile: bool = False) -> dict:
    with strategy.scope():
        model = ResNet20(seed=7)
    gamma = model.units()[0].bn.gamma
    gamma.assign(np.linspace(-0.3, 0.3, 16).astype("f"))  # some of these reach exactly 0
    cfg = StageConfig(l1_penalty=0.5, batch_size=GLOBAL_BATCH, weight_decay=weight_decay, learning_rate=LR)
    trainer = IstaTrainer(model, strategy, cfg, jit_compile=jit_compile)
    images = tf.random.stateless_normal([GLOBAL_BATCH, 32, 32, 3], seed=(0, 0))
    labels = tf.random.stateless_uniform([GLOBAL_BATCH], seed=(0, 1), maxval=10, dtype=tf.int32)
    before = [v.numpy() for v in model.trainable_variables]
    kernels_before = [k.numpy() for k in model.weight_decay_kernels()]
    trainer.step(images, labels)
    moved = max(float(np.abs(a - v.numpy()).max()) for a, v in zip(before, model.trainable_variables))
    concrete = trainer.step._accumulate_and_apply.get_concrete_function(images, labels)
    attr = concrete.function_def.attr
    return {
        "variables": [v.numpy() for v in model.variables],
        "averages": [s.numpy() for s in trainer.ema.shadows],
        "kernels_before": kernels_before,
        "kernels": [k.numpy() for k in model.weight_decay_kernels()],
        "zeros": int(np.count_nonzero(gamma.numpy() == 0)),
        "step": int(trainer.global_step.numpy()),
        "moved": moved,
        "xla": bool("_XlaMustCompile" in attr and attr["_XlaMustCompile"].b),
    }


def weight_decay_check(with_wd: dict, without: dict) -> dict:
    """The decay's share of one update, with minus without, against -lr wd W (d/dW of wd ||W||^2 / 2)."""
    worst = largest = 0.0
    for w0, a, b in zip(with_wd["kernels_before"], with_wd["kernels"], without["kernels"]):
        expected = -LR * WEIGHT_DECAY * w0
        worst = max(worst, float(np.abs((a - b) - expected).max()))
        largest = max(largest, float(np.abs(expected).max()))
    return {"kernels": len(with_wd["kernels"]), "max_error": worst, "largest_effect": largest}


SMALL_CNN4 = [8, 12, 12, 16]


def whole_stage() -> dict:
    """Two short stages of a chain under MirroredStrategy in one process, then an evaluation: checkpoints
    of mirrored and on-read variables, averaged weights, compression, and a second stage whose
    all-reduces have the pruned model's shapes (with a new MirroredStrategy per stage TensorFlow aborts
    on "Shape mismatch in the collective instance"). A small cnn4 (its version 1 written here; stages 1
    and 2): the same machinery as resnet20 (whose step run() checks) at a fraction of the cost."""
    from ista_tf import chain, cifar10_eval
    from ista_tf.models import build_model
    from ista_tf.train import run_stage
    from shared.data import load_image_classification

    data = load_image_classification("digits", "train").subset(128)
    common = {"model": "cnn4", "batch_size": 16, "distribute": "mirrored"}
    with tempfile.TemporaryDirectory() as tmp:
        start = build_model({"model": "cnn4", "widths": SMALL_CNN4}, seed=3)
        chain.write_compact(start, chain.compact_dir(f"{tmp}/run", 1), [])
        first = run_stage(
            StageConfig(l1_penalty=3.0, max_steps=6, save_checkpoint_steps=3, **common),
            f"{tmp}/run",
            1,
            data,
            log=lambda line: None,
        )
        second = run_stage(
            StageConfig(l1_penalty=0.0, max_steps=2, **common), f"{tmp}/run", 2, data, log=lambda line: None
        )
        ev = cifar10_eval.run_eval(f"{tmp}/run", 3, "cnn4", data.subset(40), log=lambda line: None)
    return {
        "steps": [first["steps"], second["steps"]],
        "widths": [first["widths_after"], second["widths_after"]],
        "params": [first["params_before"], ev["params"]],
        "one_strategy": tf_train.make_strategy("mirrored") is tf_train.make_strategy("mirrored"),
    }


def main() -> None:
    one = run(tf.distribute.get_strategy())
    xla = run(tf.distribute.get_strategy(), jit_compile=True)
    no_decay = run(tf.distribute.get_strategy(), weight_decay=0.0)
    two_strategy = tf_train.make_strategy("mirrored")
    two = run(two_strategy)
    diff = lambda a, b: max(float(np.abs(x - y).max()) for x, y in zip(a, b))  # noqa: E731
    print(
        json.dumps(
            {
                "xla": {
                    "compiled": [one["xla"], xla["xla"]],
                    "max_variable_diff": diff(one["variables"], xla["variables"]),
                    "max_average_diff": diff(one["averages"], xla["averages"]),
                    "zeros": xla["zeros"],
                },
                "weight_decay": weight_decay_check(one, no_decay),
                "replicas": two_strategy.num_replicas_in_sync,
                "max_variable_diff": diff(one["variables"], two["variables"]),
                "max_average_diff": diff(one["averages"], two["averages"]),
                "zeros": [one["zeros"], two["zeros"]],
                "steps": [one["step"], two["step"]],
                "largest_update": one["moved"],
                "stage": whole_stage(),
            }
        )
    )


if __name__ == "__main__":
    main()
