"""One worker of the 2-worker test (test_multiworker.py starts two, TF_CONFIG on loopback ports).

Trains a small conv net (no batch-dependent layer) for STEPS updates of SGD under
MultiWorkerMirroredStrategy, both workers building the same global batch, with a checkpoint trigger
whose clock runs at a different speed on each worker; then trains the same net from the same start on
the same global batches in one process without distribution; then runs a 3-step ISTA stage through
`python -m ista_tf.cifar10_train --distribute multiworker`. Prints one JSON line: the largest
difference between the two, how far the weights moved, the steps at which this worker saved, and the
ISTA entry point's exit status.
"""

from __future__ import annotations

import json
import os
import sys

from shared import tf_train

strategy = tf_train.make_strategy("multiworker")  # first: before anything starts TensorFlow's runtime

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

GLOBAL_BATCH, STEPS, LR = 10, 6, 0.5


class SmallNet(tf.Module):
    def __init__(self):
        super().__init__()
        self.kernel = tf.Variable(tf.random.stateless_normal([3, 3, 3, 6], seed=(4, 1)) * 0.4)
        self.dense = tf.Variable(tf.random.stateless_normal([6, 5], seed=(4, 2)) * 0.4)

    def __call__(self, x):
        h = tf.nn.relu(tf.nn.conv2d(x, self.kernel, 2, "SAME"))
        return tf.reduce_mean(h, [1, 2]) @ self.dense


def batch(step: int):
    x = tf.random.stateless_normal([GLOBAL_BATCH, 8, 8, 3], seed=(step, 0))
    y = tf.random.stateless_uniform([GLOBAL_BATCH], seed=(step, 1), maxval=5, dtype=tf.int32)
    return x, y


def train(strategy, model, on_step=None) -> None:
    def compute_loss(x, y):
        per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(y, model(x))
        return per_example, 0.01 * tf.nn.l2_loss(model.kernel), {}

    def apply_update(grads):
        for v, g in zip(model.trainable_variables, grads):
            v.assign_sub(LR * g)

    step_fn = tf_train.TrainStep(
        strategy, model.trainable_variables, compute_loss, apply_update, global_batch_size=GLOBAL_BATCH
    )
    for step in range(1, STEPS + 1):
        step_fn(*batch(step))
        if on_step is not None:
            on_step(step)


def main(out_dir: str) -> None:
    task = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
    with strategy.scope():
        model = SmallNet()
    start = [v.numpy() for v in model.trainable_variables]
    # each worker's clock runs at its own speed: worker 0 finds 1 s elapsed after 2 steps, worker 1 after 4
    now = {"step": 0}
    rate = 0.5 if task == 0 else 0.25
    trigger = tf_train.SaveTrigger(strategy, every_secs=1.0, clock=lambda: now["step"] * rate)
    keeper = tf_train.CheckpointKeeper(os.path.join(out_dir, "ckpt"), strategy, max_to_keep=5, model=model)
    metrics = tf_train.MetricsWriter(os.path.join(out_dir, "run"), enabled=tf_train.is_chief(strategy))
    saved = []

    def on_step(step):
        now["step"] = step
        metrics.scalars(step, {"kernel_norm": float(tf.norm(model.kernel))})
        if trigger.due(step):
            keeper.save(step)
            saved.append(step)
            trigger.saved()

    train(strategy, model, on_step)
    metrics.close()
    keeper.close()
    distributed = [v.numpy() for v in model.trainable_variables]

    reference = SmallNet()  # the same start, one process, no distribution
    train(tf.distribute.get_strategy(), reference)
    single = [v.numpy() for v in reference.trainable_variables]

    # the advertised entry point: `ista_tf.cifar10_train --distribute multiworker`, each worker with its
    # own train_dir (as on machines without a shared disk); a time trigger that fires at every step
    from ista_tf import cifar10_train

    ista_dir = os.path.join(out_dir, f"ista_worker{task}", "run")
    ista_flags = "--model cnn4 --dataset digits --max_steps 3 --batch_size 8 --log_frequency 1"
    ista_flags += f" --save_checkpoint_secs 1e-9 --distribute multiworker --train_dir {ista_dir}"
    ista_status = cifar10_train.main(ista_flags.split())
    print(
        json.dumps(
            {
                "task": task,
                "chief": tf_train.is_chief(strategy),
                "replicas": strategy.num_replicas_in_sync,
                "saved": saved,
                "max_diff": max(float(np.abs(a - b).max()) for a, b in zip(distributed, single)),
                "moved": max(float(np.abs(a - b).max()) for a, b in zip(distributed, start)),
                "ista_status": ista_status,
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1])
