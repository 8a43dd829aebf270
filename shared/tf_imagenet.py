"""ImageNet for the TF subprojects: a `tf.data` pipeline over an ImageFolder tree or a BiP-format LMDB.

The file list and the label ids come from the framework-free readers (`shared.data.imagenet`: torchvision
ImageFolder order; `shared.data.lmdb_store`: BiP's LMDB), so a TF run and a torch run over the same folder
see the same labels. What differs between papers is the preprocessing, passed in as `preprocess`:

- `random_resized_crop_flip` + `resize_shorter_center_crop`: the torchvision recipe (RandomResizedCrop with
  area 0.08-1 and aspect 3/4-4/3, horizontal flip; eval Resize(256) + CenterCrop(224)), normalised by the
  ImageNet mean/std;
- `bbox_distorted_crop` + `aspect_resize_central_crop`: TF-official `imagenet_preprocessing` (PocketFlow's
  ILSVRC-12 input: distorted bounding-box crop with min_object_covered 0.1, area 0.05-1, aspect 3/4-4/3,
  100 attempts, flip; eval: shorter side to 256 keeping the aspect, central 224 crop), mean subtraction only.

Every random choice is a stateless function of (seed, epoch, sample index), so an epoch is the same
sequence of batches whenever it is replayed (a resumed run sees what the uninterrupted one saw), and
`input_context` (from `strategy.distribute_datasets_from_function`) gives each worker its own shard.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from shared.data.imagenet import IMAGENET_MEAN, IMAGENET_STD, imagefolder_samples
from shared.data.lmdb_store import LmdbImageDataset, decode_rgb
from shared.errors import UserError, check_count

# mean/std in pixel units (0-255), as the two recipes define them
TORCHVISION_MEAN = tuple(255.0 * m for m in IMAGENET_MEAN)
TORCHVISION_STD = tuple(255.0 * s for s in IMAGENET_STD)
TF_OFFICIAL_MEAN = (123.68, 116.78, 103.94)  # imagenet_preprocessing: mean subtraction only
UNIT_STD = (1.0, 1.0, 1.0)
TF_DECODABLE = (".jpg", ".jpeg", ".png", ".bmp", ".gif")  # what tf.io.decode_image reads

# a preprocess function: (uint8 HWC image, seed [2] int32 for stateless ops) -> float32 HWC image
Preprocess = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]


# ----------------------------------------------------------------------------------------------------
# The sources
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageSource:
    """One split: an ImageFolder tree (`paths` set) or a BiP LMDB file (`lmdb_path` set)."""

    location: Path
    labels: np.ndarray  # int64 [n], in ImageFolder / LMDB order
    classes: list[str] | None  # folder names (None for an LMDB: its labels are stored ids)
    paths: list[str] | None = None
    lmdb_path: Path | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def identity(self, split: str) -> dict:
        """What a run record and a resume check need to know the data: where, how many, which classes."""
        return {
            "name": "imagenet",
            "split": split,
            "n": len(self),
            "num_classes": self.num_classes,
            "source": str(self.location),
            "format": "lmdb" if self.lmdb_path is not None else "folder",
            "first": self.paths[0] if self.paths else None,
            "last": self.paths[-1] if self.paths else None,
        }

    @property
    def num_classes(self) -> int:
        if self.classes is not None:
            return len(self.classes)
        return int(self.labels.max()) + 1 if len(self.labels) else 0


def open_source(location: str | os.PathLike, expected_classes: list[str] | None = None) -> ImageSource:
    """An ImageFolder tree (`<location>/<class>/...`) or a `.lmdb` file written by `folder2lmdb`."""
    location = Path(location).expanduser()
    if location.suffix == ".lmdb" or (location / "data.mdb").is_file():
        if not location.exists():
            raise UserError(f"ImageNet LMDB {location} does not exist (expected a file written by folder2lmdb)")
        with LmdbImageDataset(location) as db:
            labels = db.labels()
        return ImageSource(location, labels, None, lmdb_path=location)
    samples, classes = imagefolder_samples(location, expected_classes)
    labels = np.array([label for _, label in samples], dtype=np.int64)
    return ImageSource(location, labels, classes, paths=[str(p) for p, _ in samples])


def split_sources(root: str | os.PathLike, train: str = "train", val: str = "val") -> tuple[ImageSource, ImageSource]:
    """`<root>/train` and `<root>/val` (folders or `.lmdb` files), with the same classes in both."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise UserError(f"ImageNet folder {root} does not exist (expected {root}/{train} and {root}/{val})")

    def find(split: str) -> Path:
        for candidate in (root / split, root / f"{split}.lmdb"):
            if candidate.exists():
                return candidate
        raise UserError(f"{root}: no {split}/ folder or {split}.lmdb (expected both {train} and {val} splits)")

    train_path, val_path = find(train), find(val)
    train_source = open_source(train_path)
    val_source = open_source(val_path, train_source.classes)
    return train_source, val_source


def subset(source: ImageSource, indices) -> ImageSource:
    """The samples `indices` of a folder source, in that order (an LMDB file has no per-sample paths)."""
    if source.paths is None:
        raise UserError(f"{source.location}: a subset of the images needs an ImageFolder tree, not an LMDB file")
    indices = np.asarray(indices, np.int64)
    return dataclasses.replace(source, labels=source.labels[indices], paths=[source.paths[i] for i in indices])


# ----------------------------------------------------------------------------------------------------
# Preprocessing (each takes a uint8 HWC image and a stateless seed, returns float32 HWC pixels 0-255)
# ----------------------------------------------------------------------------------------------------


def _crop_resize_flip(image, seed, size: int, box_begin, box_size) -> tf.Tensor:
    crop = tf.slice(image, box_begin, box_size)
    resized = tf.image.resize(crop, [size, size], method="bilinear")
    return tf.image.stateless_random_flip_left_right(resized, seed=seed + 1)


def random_resized_crop_flip(size: int = 224, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)) -> Preprocess:
    """torchvision's RandomResizedCrop(size) + RandomHorizontalFlip (the box drawn by TF's sampler, which
    falls back to the whole image as torchvision falls back to a centre crop)."""

    def apply(image, seed):
        begin, box, _ = tf.image.stateless_sample_distorted_bounding_box(
            tf.shape(image), tf.zeros([1, 0, 4]), seed=seed, min_object_covered=0.0, aspect_ratio_range=ratio,
            area_range=scale, max_attempts=10, use_image_if_no_bounding_boxes=True,
        )  # fmt: skip
        return _crop_resize_flip(image, seed, size, begin, box)

    return apply


def bbox_distorted_crop(size: int = 224) -> Preprocess:
    """TF-official `imagenet_preprocessing` training crop (PocketFlow's ILSVRC-12 input): a distorted box
    covering at least 10 % of the whole-image box, area 5-100 %, aspect 3/4-4/3, 100 attempts; flip."""

    def apply(image, seed):
        whole = tf.constant([[[0.0, 0.0, 1.0, 1.0]]])
        begin, box, _ = tf.image.stateless_sample_distorted_bounding_box(
            tf.shape(image), whole, seed=seed, min_object_covered=0.1, aspect_ratio_range=(0.75, 1.33),
            area_range=(0.05, 1.0), max_attempts=100, use_image_if_no_bounding_boxes=True,
        )  # fmt: skip
        return _crop_resize_flip(image, seed, size, begin, box)

    return apply


def _resize_shorter(image, shorter: int) -> tf.Tensor:
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = float(shorter) / tf.reduce_min(shape)
    new = tf.cast(tf.round(shape * scale), tf.int32)
    return tf.image.resize(image, new, method="bilinear")


def _central_crop(image, size: int) -> tf.Tensor:
    h, w = tf.shape(image)[0], tf.shape(image)[1]
    top, left = (h - size) // 2, (w - size) // 2
    return tf.slice(image, [top, left, 0], [size, size, 3])


def resize_shorter_center_crop(size: int = 224, shorter: int | None = None) -> Preprocess:
    """torchvision eval: Resize(size * 256/224) of the shorter side, CenterCrop(size)."""
    shorter = shorter or int(round(size * 256 / 224))
    return lambda image, seed: _central_crop(_resize_shorter(image, shorter), size)


def aspect_resize_central_crop(size: int = 224, shorter: int = 256) -> Preprocess:
    """TF-official eval: aspect-preserving resize of the shorter side to 256, central size x size crop."""
    return lambda image, seed: _central_crop(_resize_shorter(image, shorter), size)


def normalised(preprocess: Preprocess, mean=TORCHVISION_MEAN, std=TORCHVISION_STD) -> Preprocess:
    """(pixels - mean) / std per channel, both in pixel units (0-255)."""
    mean_t, std_t = tf.constant(mean, tf.float32), tf.constant(std, tf.float32)
    return lambda image, seed: (preprocess(image, seed) - mean_t) / std_t


# ----------------------------------------------------------------------------------------------------
# The dataset
# ----------------------------------------------------------------------------------------------------


def decoder(source: ImageSource) -> Callable[[tf.Tensor], tf.Tensor]:
    """index -> uint8 HWC image. TF decodes JPEG/PNG/BMP/GIF files itself; anything else (TIFF, WebP,
    PPM files, every LMDB record) goes through Pillow, as the torch loaders decode."""
    if source.paths is not None and all(p.lower().endswith(TF_DECODABLE) for p in source.paths):
        paths = tf.constant(source.paths)

        def decode(index):
            data = tf.io.read_file(paths[index])
            return tf.io.decode_image(data, channels=3, expand_animations=False)

        return decode

    if source.paths is not None:
        paths_np = source.paths

        def read(index):
            with open(paths_np[int(index)], "rb") as f:
                return decode_rgb(f.read(), paths_np[int(index)])

    else:
        db = LmdbImageDataset(source.lmdb_path)

        def read(index):
            raw, _ = db[int(index)]
            return decode_rgb(raw, f"{source.lmdb_path} sample {int(index)}")

    def decode(index):
        image = tf.numpy_function(read, [index], tf.uint8, stateful=False)
        image.set_shape([None, None, 3])
        return image

    return decode


def imagenet_dataset(
    source: ImageSource,
    *,
    training: bool,
    batch_size: int,
    preprocess: Preprocess,
    seed: int = 0,
    epoch: int = 0,
    input_context: tf.distribute.InputContext | None = None,
    limit: int | None = None,
    label_offset: int = 0,
    drop_remainder: bool | None = None,
) -> tf.data.Dataset:
    """One epoch of (float32 NHWC images, int32 labels + label_offset) batches.

    Training: shuffled by (seed, epoch), remainder dropped; eval: file order, every image. `batch_size` is
    the global batch; with `input_context` each input pipeline takes its shard of the indices and batches
    its per-replica share. `limit` keeps the first `limit` samples (in file order, before shuffling) for
    smoke runs. `label_offset=1` gives PocketFlow's 1001-class labels (0 = background).
    """
    check_count("batch_size", batch_size)
    n = len(source) if limit is None else min(check_count("limit", limit), len(source))
    if n == 0:
        raise UserError(f"{source.location}: no images")
    labels = tf.constant(source.labels[:n].astype(np.int32) + label_offset)
    decode = decoder(source)
    indices = tf.data.Dataset.range(n)
    per_pipeline_batch = batch_size
    if input_context is not None:
        indices = indices.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
        per_pipeline_batch = input_context.get_per_replica_batch_size(batch_size)
    if training:
        indices = indices.shuffle(n, seed=seed * 100_003 + epoch, reshuffle_each_iteration=False)

    def load(index):
        sample_seed = tf.stack([tf.cast(seed * 100_003 + epoch, tf.int32), tf.cast(index, tf.int32)])
        image = preprocess(decode(index), sample_seed)
        return tf.cast(image, tf.float32), labels[index]

    drop = training if drop_remainder is None else drop_remainder
    shard_size = (
        n
        if input_context is None
        else len(range(input_context.input_pipeline_id, n, input_context.num_input_pipelines))
    )
    if drop and shard_size < per_pipeline_batch:
        raise UserError(
            f"{source.location}: {shard_size} images per input pipeline, fewer than one batch of "
            f"{per_pipeline_batch} (lower the batch size or use more images)"
        )
    return (
        indices.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .batch(per_pipeline_batch, drop_remainder=drop)
        .prefetch(tf.data.AUTOTUNE)
    )
