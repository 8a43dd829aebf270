"""Adapter: shared CIFAR-10 / digits arrays -> tf.data, with PocketFlow's CIFAR-10 pipeline.

PocketFlow (datasets/cifar10_dataset.py): per-channel mean (125.3, 123.0, 113.9) and std
(63.0, 62.1, 66.7) on 0..255 pixels; training: zero-pad to 40x40, random 32x32 crop, random left-right
flip. Evaluation: normalisation only. The authors' PyTorch code uses the same augmentation.

The training stream is a pure function of (seed, position): a fresh permutation per epoch and each
image's crop/flip from stateless ops seeded by its position, so a resumed run sees exactly the batches
an uninterrupted run sees (DCP's channel choices depend on them).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from shared.data import ArraySplit

MEAN = (125.3, 123.0, 113.9)
STD = (63.0, 62.1, 66.7)


def normalize(image: tf.Tensor) -> tf.Tensor:
    return (tf.cast(image, tf.float32) - MEAN) / STD


def augment(image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, num=2))
    x = tf.image.pad_to_bounding_box(tf.cast(image, tf.float32), 4, 4, 40, 40)
    x = tf.image.stateless_random_crop(x, [32, 32, 3], seed=crop_seed)
    x = tf.image.stateless_random_flip_left_right(x, seed=flip_seed)
    return (x - MEAN) / STD


def train_dataset(split: ArraySplit, batch_size: int, seed: int, start: int = 0, augmented: bool = True):
    """Endless batches from example position `start` of the stream."""
    n = len(split)
    images = tf.constant(split.images)
    labels = tf.constant(split.labels.astype("int32"))
    first_epoch, offset = divmod(int(start), n)

    def epoch(e):
        order = tf.argsort(tf.random.stateless_uniform([n], seed=tf.stack([tf.constant(seed, tf.int64), e])))
        return tf.data.Dataset.from_tensor_slices((e * n + tf.range(n, dtype=tf.int64), order))

    def example(position, index):
        image = tf.gather(images, index)
        x = augment(image, tf.stack([tf.constant(seed, tf.int64), position])) if augmented else normalize(image)
        return x, tf.gather(labels, index)

    return (
        tf.data.Dataset.range(first_epoch, 2**62)
        .flat_map(epoch)
        .skip(offset)
        .map(example, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .batch(batch_size, drop_remainder=True)
        .prefetch(tf.data.AUTOTUNE)
    )


class Stream:
    """Training batches with a position (examples consumed) that a checkpoint can store."""

    def __init__(self, split: ArraySplit, batch_size: int, seed: int, position: int = 0, augmented: bool = True):
        self.split, self.batch_size, self.seed, self.augmented = split, int(batch_size), int(seed), augmented
        self.position = int(position)
        self._it = iter(train_dataset(split, batch_size, seed, position, augmented))

    def next(self):
        self.position += self.batch_size
        return next(self._it)


def eval_batches(split: ArraySplit, batch_size: int):
    """Every image once, in order (the last batch may be smaller)."""
    ds = tf.data.Dataset.from_tensor_slices((split.images, split.labels.astype("int32")))
    return ds.map(lambda x, y: (normalize(x), y)).batch(batch_size).prefetch(tf.data.AUTOTUNE)


def first_n(split: ArraySplit, n: int) -> ArraySplit:
    """The first n examples (n <= 0: all): the paper's selection set (10k random images on ImageNet)."""
    if n <= 0 or n >= len(split):
        return split
    idx = np.random.default_rng(0).permutation(len(split))[:n]
    return ArraySplit(split.name, split.split, split.images[idx], split.labels[idx], split.classes, source=split.source)
