"""Run by test_train.py in a fresh interpreter (logical CPU devices must exist before TF starts): the
same computations on one device and on MirroredStrategy over 2 logical CPUs, same global batches:

- one fine-tuning update with the memory bank (two views, dynamic teacher subset, BN statistics),
  global batch 9 (split 4 + 5);
- one search iteration (importance pass, candidates, evaluations, choice, ensemble knowledge) over a
  D^val of 18 images in batches of 9;
- memory-bank logits of the first history entry.

Prints one JSON line with the largest differences."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from shared import tf_train

tf_train.use_logical_cpus(2)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from ekg_tf2.memory_bank import build_memory_bank  # noqa: E402
from ekg_tf2.models import ResNet  # noqa: E402
from ekg_tf2.search import EKGSearch, SearchConfig  # noqa: E402
from ekg_tf2.train import FinetuneConfig, FineTuner  # noqa: E402


def make_model(strategy):
    with strategy.scope():
        model = ResNet("ResNet-8", 10, seed=4)
    for name, layer in model.layers.items():
        if name.endswith("bn2"):
            layer.gamma.assign(tf.ones_like(layer.gamma) * 0.5)
    return model


def finetune(strategy) -> tuple[list, float]:
    model = make_model(strategy)
    cfg = FinetuneConfig(batch_size=9, knowledge="ensemble", learning_rate=0.05, distribute="mirrored")
    tuner = FineTuner(model, strategy, cfg, jit_compile=False)
    images = np.random.RandomState(0).randint(0, 256, [9, 32, 32, 3]).astype(np.uint8)
    labels = np.arange(9) % 10
    bank = np.random.RandomState(1).normal(0, 2, [9, 10, 3]).astype(np.float32)
    before = [v.numpy() for v in model.variables]
    features, packed = tuner.features(images, labels, bank, (0, 0), "CIFAR10")
    tuner.update(features, packed)
    after = [v.numpy() for v in model.variables]
    return after, max(float(np.abs(a - b).max()) for a, b in zip(before, after))


def search(strategy) -> dict:
    model = make_model(strategy)
    x = tf.random.stateless_normal([18, 32, 32, 3], seed=(7, 7)).numpy()
    y = np.arange(18) % 10
    s = EKGSearch(model, strategy, x, y, SearchConfig(0.5, search_batch_size=9), log=lambda m: None)
    s.start()
    info = s.step()
    with tempfile.TemporaryDirectory() as d:
        images = np.random.RandomState(3).randint(0, 256, [18, 32, 32, 3]).astype(np.uint8)
        path = build_memory_bank(s, images, "CIFAR10", Path(d) / "bank.npy", [0, 1], 9, log=lambda m: None)
        bank = np.load(path)
    return {"info": info, "knowledge": s.knowledge, "bank": bank}


def main() -> None:
    one = tf.distribute.get_strategy()
    two = tf_train.make_strategy("mirrored")
    assert two.num_replicas_in_sync == 2
    f1, moved = finetune(one)
    f2, _ = finetune(two)
    s1, s2 = search(one), search(two)
    print(
        json.dumps(
            {
                "replicas": two.num_replicas_in_sync,
                "finetune_moved": moved,
                "finetune_max_diff": max(float(np.abs(a - b).max()) for a, b in zip(f1, f2)),
                "search_gate": [s1["info"]["gate"], s2["info"]["gate"]],
                "search_chosen": [s1["info"]["chosen"], s2["info"]["chosen"]],
                "search_score_diff": float(np.abs(np.subtract(s1["info"]["scores"], s2["info"]["scores"])).max()),
                "knowledge_diff": float(np.abs(s1["knowledge"] - s2["knowledge"]).max()),
                "bank_diff": float(np.abs(s1["bank"] - s2["bank"]).max()),
            }
        )
    )


if __name__ == "__main__":
    main()
