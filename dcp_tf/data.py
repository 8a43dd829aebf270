"""Adapter: shared CIFAR-10 / digits arrays and ILSVRC-12 folders -> tf.data, with PocketFlow's pipelines.

PocketFlow (datasets/cifar10_dataset.py): per-channel mean (125.3, 123.0, 113.9) and std
(63.0, 62.1, 66.7) on 0..255 pixels; training: zero-pad to 40x40, random 32x32 crop, random left-right
flip. Evaluation: normalisation only. The authors' PyTorch code uses the same augmentation.

ILSVRC-12 (`ImageNetSplit`, through `shared.tf_imagenet`): TF-official `imagenet_preprocessing`, which
PocketFlow's ILSVRC-12 input used: training, a distorted bounding-box crop (at least 10 % of the image,
area 5-100 %, aspect 3/4-4/3) resized to 224 and flipped; evaluation, the shorter side resized to 256 and
the central 224 crop; mean subtraction only (no division by a std). Labels are shifted by one: PocketFlow's
networks have 1001 outputs, index 0 being the background class of the TF-slim ImageNet files.

The training stream is a pure function of (seed, position): a fresh permutation per epoch and each
image's crop/flip from stateless ops seeded by its position, so a resumed run sees exactly the batches
an uninterrupted run sees (DCP's channel choices depend on them).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from shared import tf_imagenet
from shared.data import ArraySplit
from shared.errors import UserError

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


LABEL_OFFSET = 1  # ILSVRC-12 label + 1 = output index of PocketFlow's 1001-way classifier


class ImageNetSplit:
    """One ILSVRC-12 split (an ImageFolder tree or a BiP LMDB) at `image_size` (224; smaller for smoke runs),
    with the attributes of an ArraySplit that the learners and run records read."""

    def __init__(self, source: tf_imagenet.ImageSource, split: str, image_size: int = 224):
        if source.num_classes > 1000:
            raise UserError(f"{source.location}: {source.num_classes} classes; PocketFlow's networks have 1000 (+1)")
        self.images, self.name, self.split, self.image_size = source, "ilsvrc12", split, int(image_size)
        self.source, self.classes = str(source.location), source.classes
        self.labels = source.labels.astype("int32")
        mean = tf_imagenet.TF_OFFICIAL_MEAN, tf_imagenet.UNIT_STD
        size = self.image_size
        self.train_preprocess = tf_imagenet.normalised(tf_imagenet.bbox_distorted_crop(size), *mean)
        shorter = int(round(size * 256 / 224))
        self.eval_preprocess = tf_imagenet.normalised(tf_imagenet.aspect_resize_central_crop(size, shorter), *mean)

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, indices) -> ImageNetSplit:
        return ImageNetSplit(tf_imagenet.subset(self.images, indices), self.split, self.image_size)


def imagenet_splits(root: str, image_size: int = 224) -> tuple[ImageNetSplit, ImageNetSplit]:
    """`root/train` and `root/val` (class folders or `.lmdb` files), the same classes in both."""
    train, val = tf_imagenet.split_sources(root)
    return ImageNetSplit(train, "train", image_size), ImageNetSplit(val, "val", image_size)


def _example_fn(split, seed: int, augmented: bool):
    """(stream position, index) -> (image, label) for one example of `split`."""
    if isinstance(split, ImageNetSplit):
        decode, labels = tf_imagenet.decoder(split.images), tf.constant(split.labels + LABEL_OFFSET)
        preprocess = split.train_preprocess if augmented else split.eval_preprocess

        def example(position, index):
            sample_seed = tf.cast(tf.stack([tf.constant(seed, tf.int64), position]), tf.int32)
            return preprocess(decode(index), sample_seed), tf.gather(labels, index)

        return example
    images = tf.constant(split.images)
    labels = tf.constant(split.labels.astype("int32"))

    def example(position, index):
        image = tf.gather(images, index)
        x = augment(image, tf.stack([tf.constant(seed, tf.int64), position])) if augmented else normalize(image)
        return x, tf.gather(labels, index)

    return example


def train_dataset(split, batch_size: int, seed: int, start: int = 0, augmented: bool = True):
    """Endless batches from example position `start` of the stream."""
    n = len(split)
    example = _example_fn(split, seed, augmented)
    first_epoch, offset = divmod(int(start), n)

    def epoch(e):
        order = tf.argsort(tf.random.stateless_uniform([n], seed=tf.stack([tf.constant(seed, tf.int64), e])))
        return tf.data.Dataset.from_tensor_slices((e * n + tf.range(n, dtype=tf.int64), order))

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

    def __init__(self, split, batch_size: int, seed: int, position: int = 0, augmented: bool = True):
        self.split, self.batch_size, self.seed, self.augmented = split, int(batch_size), int(seed), augmented
        self.position = int(position)
        self._it = iter(train_dataset(split, batch_size, seed, position, augmented))

    def next(self):
        self.position += self.batch_size
        return next(self._it)


def eval_batches(split, batch_size: int):
    """Every image once, in order (the last batch may be smaller)."""
    if isinstance(split, ImageNetSplit):
        return tf_imagenet.imagenet_dataset(
            split.images, training=False, batch_size=batch_size, preprocess=split.eval_preprocess,
            label_offset=LABEL_OFFSET,
        )  # fmt: skip
    ds = tf.data.Dataset.from_tensor_slices((split.images, split.labels.astype("int32")))
    return ds.map(lambda x, y: (normalize(x), y)).batch(batch_size).prefetch(tf.data.AUTOTUNE)


def first_n(split, n: int):
    """n examples drawn once with a fixed seed (n <= 0: all): the paper's selection set (10k random images on
    ImageNet)."""
    if n <= 0 or n >= len(split):
        return split
    idx = np.random.default_rng(0).permutation(len(split))[:n]
    if isinstance(split, ImageNetSplit):
        return split.subset(idx)
    return ArraySplit(split.name, split.split, split.images[idx], split.labels[idx], split.classes, source=split.source)
