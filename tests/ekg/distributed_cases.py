"""The computations the replica checks run on one device and under a tf.distribute strategy, on the
same global batches (imported after the strategy or the logical devices are set up):

- `finetune`: one fine-tuning update with the memory bank (two views, dynamic teacher subset, BN
  statistics), global batch 9 (split 4 + 5 over 2 replicas);
- `reference`: both on one device (the fine-tuning step eagerly);
- `search`: one search iteration (importance pass, candidates, evaluations, choice, ensemble
  knowledge) over a D^val of 18 images in batches of 9, then the memory-bank logits of history
  entries 0 and 1.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import tensorflow as tf

from ekg_tf2.memory_bank import build_memory_bank
from ekg_tf2.models import ResNet
from ekg_tf2.search import EKGSearch, SearchConfig
from ekg_tf2.train import FinetuneConfig, FineTuner
from shared.tf_train import functions_run_eagerly


def reference(bank: bool = True):
    """(finetune, search) on one device, the fine-tuning step run eagerly: no tracing, and a reference
    computed by another path than the distributed graph it is compared with."""
    one = tf.distribute.get_strategy()
    with functions_run_eagerly(True):
        return finetune(one)[0], search(one, bank=bank)


def make_model(strategy):
    with strategy.scope():
        model = ResNet("ResNet-8", 10, seed=4)
    for name, layer in model.layers.items():
        if name.endswith("bn2"):
            layer.gamma.assign(tf.ones_like(layer.gamma) * 0.5)
    return model


def finetune(strategy) -> tuple[list, float]:
    """(weights after one update, how far the update moved them)."""
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


def search(strategy, bank: bool = True) -> dict:
    model = make_model(strategy)
    x = tf.random.stateless_normal([18, 32, 32, 3], seed=(7, 7)).numpy()
    y = np.arange(18) % 10
    s = EKGSearch(model, strategy, x, y, SearchConfig(0.5, search_batch_size=9), log=lambda m: None)
    s.start()
    info = s.step()
    out = {"info": info, "knowledge": s.knowledge}
    if bank:
        with tempfile.TemporaryDirectory() as d:
            images = np.random.RandomState(3).randint(0, 256, [18, 32, 32, 3]).astype(np.uint8)
            path = build_memory_bank(s, images, "CIFAR10", Path(d) / "bank.npy", [0, 1], 9, log=lambda m: None)
            out["bank"] = np.load(path)
    return out


def compare(f1, f2, s1, s2) -> dict:
    """The largest differences between a reference (1) and a distributed (2) run of the cases."""
    out = {
        "finetune_max_diff": max(float(np.abs(a - b).max()) for a, b in zip(f1, f2)),
        "search_gate": [s1["info"]["gate"], s2["info"]["gate"]],
        "search_chosen": [s1["info"]["chosen"], s2["info"]["chosen"]],
        "search_score_diff": float(np.abs(np.subtract(s1["info"]["scores"], s2["info"]["scores"])).max()),
        "knowledge_diff": float(np.abs(s1["knowledge"] - s2["knowledge"]).max()),
    }
    if "bank" in s1 and "bank" in s2:
        out["bank_diff"] = float(np.abs(s1["bank"] - s2["bank"]).max())
    return out
