"""Adapter: shared CIFAR-shaped uint8 arrays -> tf.data, with the original augmentation.

Training (cifar10_input.distorted_inputs, research/ista.md 2.9), on float pixels in 0..255:
zero-pad 4 to 40x40 -> random 32x32 crop -> random left-right flip -> random brightness +-63 ->
random contrast [0.2, 1.8] -> per-image standardisation. No dataset mean/std normalisation.
Evaluation: per-image standardisation only (the original's crop-or-pad to 32 is a no-op).

The training stream is a pure function of (seed, position): the order is a fresh permutation per
epoch and each image's augmentation is drawn with stateless ops seeded by its position in the stream.
So a run resumed at step s sees exactly the batches an uninterrupted run sees from step s on, and
replicas/accumulation split the same global batches. (The original shuffled through a 20,000-image
queue; a per-epoch permutation is a full shuffle.)
"""

from __future__ import annotations

import tensorflow as tf

from shared.data import ArraySplit

PAD = 4
IMAGE_SIZE = 32
MAX_BRIGHTNESS_DELTA = 63.0
CONTRAST_RANGE = (0.2, 1.8)


def distort(image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """The original training augmentation of one uint8 HWC image; `seed` is a stateless seed [2]."""
    crop_seed, flip_seed, brightness_seed, contrast_seed = tf.unstack(
        tf.random.experimental.stateless_split(seed, num=4)
    )
    x = tf.cast(image, tf.float32)
    x = tf.image.pad_to_bounding_box(x, PAD, PAD, IMAGE_SIZE + 2 * PAD, IMAGE_SIZE + 2 * PAD)
    x = tf.image.stateless_random_crop(x, [IMAGE_SIZE, IMAGE_SIZE, 3], seed=crop_seed)
    x = tf.image.stateless_random_flip_left_right(x, seed=flip_seed)
    x = tf.image.stateless_random_brightness(x, MAX_BRIGHTNESS_DELTA, seed=brightness_seed)
    x = tf.image.stateless_random_contrast(x, *CONTRAST_RANGE, seed=contrast_seed)
    return tf.image.per_image_standardization(x)


def standardize(image: tf.Tensor) -> tf.Tensor:
    return tf.image.per_image_standardization(tf.cast(image, tf.float32))


def train_dataset(split: ArraySplit, batch_size: int, seed: int, start: int = 0) -> tf.data.Dataset:
    """Endless augmented batches (images float32 [b, 32, 32, 3], labels int32 [b]) from example
    position `start` of the stream (= steps done x examples per step, for resuming)."""
    n = len(split)
    images = tf.constant(split.images)
    labels = tf.constant(split.labels.astype("int32"))
    first_epoch, offset = divmod(int(start), n)

    def epoch(e):
        order = tf.argsort(tf.random.stateless_uniform([n], seed=tf.stack([tf.constant(seed, tf.int64), e])))
        positions = e * n + tf.range(n, dtype=tf.int64)
        return tf.data.Dataset.from_tensor_slices((positions, order))

    def example(position, index):
        image_seed = tf.stack([tf.constant(seed, tf.int64), position])
        return distort(tf.gather(images, index), image_seed), tf.gather(labels, index)

    return (
        tf.data.Dataset.range(first_epoch, 2**62)
        .flat_map(epoch)
        .skip(offset)
        .map(example, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .batch(batch_size, drop_remainder=True)
        .prefetch(tf.data.AUTOTUNE)
    )


def eval_dataset(split: ArraySplit, batch_size: int) -> tf.data.Dataset:
    """Every test image once, in order (the last batch may be smaller)."""
    ds = tf.data.Dataset.from_tensor_slices((split.images, split.labels.astype("int32")))
    return (
        ds.map(lambda x, y: (standardize(x), y), num_parallel_calls=tf.data.AUTOTUNE)
        .batch(batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )
