"""shared.tf_imagenet: labels stay with their images, epochs replay, shards partition, crops and
normalisation by hand, LMDB = folder, bad input named."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from shared.errors import UserError
from tests.jpeg_folder import CLASS_STEP, class_names, write_jpeg_folder

tf = pytest.importorskip("tensorflow")
ti = pytest.importorskip("shared.tf_imagenet")

pytestmark = pytest.mark.tf


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return write_jpeg_folder(tmp_path_factory.mktemp("imagenet"), classes=4, per_class=5, size=24)


def batches(ds):
    images, labels = [], []
    for x, y in ds:
        images.append(x.numpy())
        labels.append(y.numpy())
    return np.concatenate(images), np.concatenate(labels)


def test_eval_order_labels_and_images_agree(tree):
    train, val = ti.split_sources(tree)
    assert train.classes == class_names(4) == val.classes and len(train) == 20 and len(val) == 8
    ds = ti.imagenet_dataset(train, training=False, batch_size=3, preprocess=ti.resize_shorter_center_crop(16),
                             label_offset=1)  # fmt: skip
    images, labels = batches(ds)
    assert images.shape == (20, 16, 16, 3) and images.dtype == np.float32
    np.testing.assert_array_equal(labels, np.repeat(np.arange(4), 5) + 1)  # ImageFolder order, offset
    # each image's red channel encodes its class: a label paired with another sample's image fails here
    red = images[..., 0].mean(axis=(1, 2))
    np.testing.assert_allclose(red, CLASS_STEP * (labels - 1) + 3.5, atol=2.5)


def test_training_epoch_replays_and_differs_between_epochs(tree):
    train, _ = ti.split_sources(tree)
    make = lambda epoch: ti.imagenet_dataset(  # noqa: E731
        train, training=True, batch_size=6, preprocess=ti.random_resized_crop_flip(12), seed=3, epoch=epoch
    )
    (x0, y0), (x0b, y0b), (x1, y1) = batches(make(0)), batches(make(0)), batches(make(1))
    np.testing.assert_array_equal(x0, x0b)
    np.testing.assert_array_equal(y0, y0b)
    assert len(y0) == 18  # 20 images, remainder of 2 dropped
    assert not np.array_equal(y0, y1) and not np.allclose(x0, x1)
    red = x0[..., 0].mean(axis=(1, 2))  # crops and flips keep an image with its own label
    np.testing.assert_allclose(red, CLASS_STEP * y0 + 3.5, atol=2.5)


def test_shards_partition_the_split(tree):
    train, _ = ti.split_sources(tree)
    seen = []
    for pipeline in range(2):
        ctx = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=pipeline, num_replicas_in_sync=2)
        ds = ti.imagenet_dataset(train, training=False, batch_size=4, input_context=ctx,
                                 preprocess=ti.resize_shorter_center_crop(8))  # fmt: skip
        first = next(iter(ds))[0]
        assert first.shape[0] == 2  # per-replica share of the global batch
        seen.append(batches(ds)[0][..., 0].mean(axis=(1, 2)))
    whole = ti.imagenet_dataset(train, training=False, batch_size=4, preprocess=ti.resize_shorter_center_crop(8))
    ordered = batches(whole)[0][..., 0].mean(axis=(1, 2))
    np.testing.assert_allclose(np.sort(np.concatenate(seen)), np.sort(ordered), rtol=0, atol=1e-4)
    np.testing.assert_allclose(seen[0], ordered[0::2], atol=1e-4)


def test_center_crop_and_normalisation_by_hand(tmp_path):
    # a horizontal ramp 20 x 40 (PNG: lossless); shorter side 20 -> 10 halves it, the centre 8 x 8 crop
    # covers columns 6..13 of the 20-wide resized ramp; each resized column averages two source columns
    ramp = np.tile((np.arange(40) * 6).astype(np.uint8)[None, :, None], (20, 1, 3))
    for split in ("train", "val"):
        (tmp_path / split / "c0").mkdir(parents=True)
        Image.fromarray(ramp).save(tmp_path / split / "c0" / "ramp.png")
    train, _ = ti.split_sources(tmp_path)
    prep = ti.normalised(ti.resize_shorter_center_crop(8, shorter=10), mean=(10.0, 20.0, 30.0), std=(2.0, 4.0, 5.0))
    image = batches(ti.imagenet_dataset(train, training=False, batch_size=1, preprocess=prep))[0][0]
    resized_columns = (ramp[0, 0::2, 0].astype(np.float64) + ramp[0, 1::2, 0]) / 2  # bilinear /2 = pair means
    expected = resized_columns[6:14]
    np.testing.assert_allclose(image[0, :, 0], (expected - 10.0) / 2.0, atol=1e-3)
    np.testing.assert_allclose(image[3, :, 2], (expected - 30.0) / 5.0, atol=1e-3)


def test_bbox_crop_is_seeded_and_sized(tree):
    train, _ = ti.split_sources(tree)
    prep = ti.normalised(ti.bbox_distorted_crop(10), mean=ti.TF_OFFICIAL_MEAN, std=ti.UNIT_STD)
    make = lambda s: batches(ti.imagenet_dataset(train, training=True, batch_size=5, preprocess=prep, seed=s))  # noqa: E731
    (xa, ya), (xb, yb), (xc, _) = make(1), make(1), make(2)
    assert xa.shape == (20, 10, 10, 3)
    np.testing.assert_array_equal(xa, xb)
    np.testing.assert_array_equal(ya, yb)
    assert not np.allclose(xa, xc)
    # mean subtraction only: green was 100..107 in every image
    assert np.all(np.abs(xa[..., 1].mean(axis=(1, 2)) - (103.5 - 116.78)) < 3)


def test_lmdb_source_equals_the_folder(tmp_path):
    from shared.data.imagenet import folder_to_lmdb

    rng = np.random.default_rng(0)
    for c in range(3):
        for k in range(2):
            folder = tmp_path / "train" / f"k{c}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (9 + k, 12, 3), dtype=np.uint8)).save(folder / f"{k}.png")
    folder_to_lmdb(tmp_path / "train", tmp_path / "train.lmdb")
    prep = ti.resize_shorter_center_crop(8)
    kwargs = dict(training=False, batch_size=4, preprocess=prep)
    x_folder, y_folder = batches(ti.imagenet_dataset(ti.open_source(tmp_path / "train"), **kwargs))
    lmdb_source = ti.open_source(tmp_path / "train.lmdb")
    x_lmdb, y_lmdb = batches(ti.imagenet_dataset(lmdb_source, **kwargs))
    np.testing.assert_array_equal(y_folder, y_lmdb)
    np.testing.assert_array_equal(x_folder, x_lmdb)
    assert lmdb_source.identity("train")["format"] == "lmdb" and lmdb_source.num_classes == 3


def test_bad_input_is_named(tree, tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        ti.split_sources(tmp_path / "nowhere")
    (tmp_path / "train" / "a").mkdir(parents=True)
    with pytest.raises(UserError, match="no val/ folder"):
        ti.split_sources(tmp_path)
    train, _ = ti.split_sources(tree)
    with pytest.raises(UserError, match="fewer than one batch"):
        ti.imagenet_dataset(train, training=True, batch_size=64, preprocess=ti.random_resized_crop_flip(8))
    with pytest.raises(UserError, match="batch_size"):
        ti.imagenet_dataset(train, training=False, batch_size=0, preprocess=ti.random_resized_crop_flip(8))
    identity = train.identity("train")
    assert identity["n"] == 20 and identity["num_classes"] == 4 and identity["first"].endswith("_0.JPEG")
