"""The tf.data adapter: the original augmentation, a stream that resumes exactly, evaluation order."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.tf

tf = pytest.importorskip("tensorflow")

from ista_tf import data  # noqa: E402


def _take(ds, n):
    return [(x.numpy(), y.numpy()) for x, y in ds.take(n)]


def test_stream_resumed_at_a_step_equals_the_uninterrupted_stream(digits_train):
    split = digits_train.subset(50)  # 50 images: batches of 8 cross epoch boundaries
    full = _take(data.train_dataset(split, 8, seed=3), 10)
    resumed = _take(data.train_dataset(split, 8, seed=3, start=6 * 8), 4)
    for (x, y), (rx, ry) in zip(full[6:], resumed):
        np.testing.assert_array_equal(rx, x)
        np.testing.assert_array_equal(ry, y)
    other_seed = _take(data.train_dataset(split, 8, seed=4), 1)[0][0]
    assert not np.allclose(other_seed, full[0][0])


def test_each_epoch_is_a_permutation_of_the_data(digits_train):
    split = digits_train.subset(40)
    labels = np.concatenate([y for _, y in _take(data.train_dataset(split, 10, seed=0), 8)])
    for epoch in (labels[:40], labels[40:]):
        np.testing.assert_array_equal(np.sort(epoch), np.sort(split.labels[:40]))
    assert not np.array_equal(labels[:40], labels[40:])


def test_distortion_is_seeded_and_ends_standardized(digits_train):
    image = tf.constant(digits_train.images[0])
    a = data.distort(image, tf.constant([1, 2], tf.int64)).numpy()
    b = data.distort(image, tf.constant([1, 2], tf.int64)).numpy()
    c = data.distort(image, tf.constant([1, 3], tf.int64)).numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    assert a.shape == (32, 32, 3) and a.dtype == np.float32
    assert abs(a.mean()) < 1e-4 and a.std() == pytest.approx(1.0, abs=1e-3)  # per-image standardization last


def test_crop_is_taken_from_the_zero_padded_image():
    # a constant image: any crop reaching into the 4-pixel zero border shows zeros before standardization
    image = tf.fill([32, 32, 3], tf.constant(200, tf.uint8))
    shifted = 0
    for s in range(20):
        out = data.distort(image, tf.constant([0, s], tf.int64)).numpy()
        shifted += int(out.std() > 0.5)  # border zeros make the standardized image non-constant
    assert shifted > 10


def test_eval_dataset_covers_every_image_in_order(digits_test):
    split = digits_test.subset(70)
    batches = _take(data.eval_dataset(split, 32), 10)
    assert [len(y) for _, y in batches] == [32, 32, 6]
    np.testing.assert_array_equal(np.concatenate([y for _, y in batches]), split.labels)
    x = batches[0][0]
    assert np.allclose(x.mean(axis=(1, 2, 3)), 0, atol=1e-4)
