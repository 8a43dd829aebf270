"""The `full-prec` learner (PocketFlow's FullPrecLearner: trains the baseline DCP starts from),
evaluation, and the run record of a DCP run.

Full-precision training (nets/resnet_at_cifar10.py's schedule): momentum 0.9 (no Nesterov), lr 0.1 x
global batch / 128, 250 epochs with x0.1 at epochs 100, 150, 200 (all scaled by nb_epochs_rat), loss
softmax CE + 2e-4 x sum of l2_loss over the non-BN variables. The model goes to `save_path`'s folder;
an interrupted run resumes from its last checkpoint; a finished one is never overwritten.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from dcp_tf import checkpoints, data
from dcp_tf import flops as dflops
from dcp_tf.models import ResNet
from dcp_tf.optim import Momentum
from shared import tf_train
from shared.errors import UserError


@dataclass
class FullPrecConfig:
    family: str = "pocketflow"
    dataset: str = "cifar10"
    resnet_size: int = 20
    batch_size: int = 128
    lrn_rate_init: float = 0.1
    batch_size_norm: int = 128
    momentum: float = 0.9
    loss_w_dcy: float = 2e-4
    nb_epochs: float = 250.0
    lr_epochs: tuple[float, ...] = (100.0, 150.0, 200.0)
    nb_epochs_rat: float = 1.0
    nb_iters_train: int = 0  # > 0: overrides the epoch count (a short baseline)
    save_step: int = 10000
    summ_step: int = 100
    seed: int = 0
    accum_steps: int = 1
    xla: bool = False
    bn_decay: float | None = None  # None: the network's (0.997 / 0.9)


def schedule(total_examples: int, global_batch: int, cfg) -> tuple[int, list[int], float]:
    per_epoch = total_examples / global_batch
    total = int(math.ceil(cfg.nb_epochs * cfg.nb_epochs_rat * per_epoch))
    bounds = [int(math.ceil(e * cfg.nb_epochs_rat * per_epoch)) for e in cfg.lr_epochs]
    if getattr(cfg, "nb_iters_train", 0):
        scale = cfg.nb_iters_train / max(total, 1)
        total, bounds = cfg.nb_iters_train, [int(b * scale) for b in bounds]
    return total, bounds, cfg.lrn_rate_init * global_batch / cfg.batch_size_norm


def full_prec(cfg: FullPrecConfig, split, folder: str | Path, strategy=None, log=print, metrics=None) -> dict:
    """Train the baseline into `folder` (PocketFlow's ./models); resumes an interrupted run."""
    folder = Path(folder)
    if checkpoints.has_model(folder):
        raise UserError(
            f"{folder} already holds a trained model; pass another --save_path (finished models are never overwritten)"
        )
    strategy = strategy or tf.distribute.get_strategy()
    global_batch = cfg.batch_size * strategy.num_replicas_in_sync
    micro = global_batch // cfg.accum_steps
    with strategy.scope():
        model = ResNet(cfg.family, cfg.dataset, cfg.resnet_size, seed=cfg.seed)
        model.set_bn_decay(cfg.bn_decay)
        opt = Momentum(model.model_variables(), [None] * len(model.model_variables()), momentum=cfg.momentum)
    step_var = tf.Variable(0, dtype=tf.int64, trainable=False)
    work = folder / "train"
    keeper = tf_train.CheckpointKeeper(work, strategy, model=model, opt=opt, step=step_var)
    keeper.restore_latest()
    total, bounds, lr0 = schedule(len(split), global_batch, cfg)

    def loss(x, y):
        logits = model.forward(x, True, True)[0]
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
        wd = cfg.loss_w_dcy * tf.add_n([tf.nn.l2_loss(v) for v in model.decay_variables()])
        acc = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, 1, output_type=tf.int32), y), tf.float32))
        return ce, wd, {"correct": acc}

    train_step = tf_train.TrainStep(
        strategy, opt.vars, loss, opt.apply, global_batch_size=micro, accum_steps=cfg.accum_steps, jit_compile=cfg.xla,
        autograph=False,
    )  # fmt: skip
    stream = data.Stream(split, micro, cfg.seed, int(step_var.numpy()) * global_batch)
    t0, done0 = time.time(), int(step_var.numpy())
    bar = tf_train.progress(total, "full-prec", done0)
    out = {}
    while int(step_var.numpy()) < total:
        s = int(step_var.numpy())
        opt.lr.assign(lr0 * 0.1 ** sum(s >= b for b in bounds))
        for _ in range(cfg.accum_steps):
            out = train_step(*stream.next())
        step_var.assign_add(1)
        bar.update(1)
        s += 1
        if cfg.summ_step and s % cfg.summ_step == 0:
            log(f"full-prec step {s}/{total}: loss {float(out['loss']):.4f}")
            if metrics is not None:
                metrics.scalars(s, {"loss": float(out["loss"]), "lr": float(opt.lr.numpy())}, phase="full-prec")
        if cfg.save_step and s % cfg.save_step == 0:
            keeper.save(s)
    bar.close()
    seconds = time.time() - t0
    info = {"learner": "full-prec", "steps": total, "config": asdict(cfg)}
    checkpoints.save_model(folder, model, info)
    keeper.close()
    return {
        "model": model,
        "steps": total,
        "train_seconds": seconds,
        "examples_per_sec": (total - done0) * global_batch / max(seconds, 1e-9),
    }


def evaluate(model: ResNet, split, batch_size: int = 100) -> dict:
    """Top-1 and top-5 accuracy and mean CE with inference BN over every example of `split`."""

    batches = data.eval_batches(split, batch_size)

    def step(x, y):
        logits = model(x, training=False)
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
        top1 = tf.equal(tf.argmax(logits, 1, output_type=tf.int32), y)
        top5 = tf.math.in_top_k(y, logits, min(5, model.num_classes))
        return tf.reduce_sum(ce), tf.reduce_sum(tf.cast(top1, tf.int32)), tf.reduce_sum(tf.cast(top5, tf.int32))

    # one trace for every batch size (the last batch may be smaller)
    step = tf.function(step, input_signature=list(batches.element_spec), autograph=False)
    n = loss = correct = correct5 = 0
    for x, y in batches:
        lsum, c, c5 = step(x, y)
        loss += float(lsum)
        correct += int(c)
        correct5 += int(c5)
        n += int(y.shape[0])
    if n == 0:
        raise UserError(f"the evaluation split {split.name}/{split.split} is empty")
    # top-1 and top-5 named as such (PocketFlow's ILSVRC-12 `accuracy` was top-5)
    return {"top1": correct / n, "top5": correct5 / n, "loss": loss / n, "n": n}


def kept_summary(model: ResNet) -> dict:
    """{conv label: [kept, c_in]} for every conv with pruned input channels."""
    out = {}
    for c in model.convs:
        k = dflops.kept_channels(c)
        if k < c.c_in:
            out[c.label] = [k, c.c_in]
    return out


def exact_zero_check(model: ResNet) -> int:
    """Number of nonzero weights in pruned kernel slices (0 when the masks held)."""
    bad = 0
    for c in model.convs:
        pruned = c.mask.numpy() == 0
        if pruned.any():
            bad += int(np.count_nonzero(c.kernel.numpy()[:, :, pruned, :]))
    return bad
