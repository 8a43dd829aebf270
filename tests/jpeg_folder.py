"""Tiny ImageNet-style trees of real JPEG files for the ImageNet smoke tests (no download, no framework).

`write_jpeg_folder(root)` writes `<root>/train/<class>/*.JPEG` and `<root>/val/<class>/*.JPEG`; every image
has its own size and a colour that encodes its class (channel 0 = 40 * class), so a decoded batch can be
checked against its labels and a network can learn the classes in a few steps.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

CLASS_STEP = 40  # red channel of class c = CLASS_STEP * c (plus noise below 8)


def class_names(classes: int) -> list[str]:
    """WordNet-like ids, sorted in class order (as ImageNet's n0xxxxxxx folders are)."""
    return [f"n{10000000 + 1111 * c:08d}" for c in range(classes)]


def write_jpeg_folder(
    root: str | Path, classes: int = 4, per_class: int = 6, size: int = 40, val_per_class: int = 2, seed: int = 0
) -> Path:
    """Write train/val class folders of JPEGs under `root` and return `root`. Sizes vary around `size`
    (non-square, so the crops and resizes are exercised)."""
    root, rng = Path(root), np.random.default_rng(seed)
    for split, count in (("train", per_class), ("val", val_per_class)):
        for c, wnid in enumerate(class_names(classes)):
            folder = root / split / wnid
            folder.mkdir(parents=True, exist_ok=True)
            for k in range(count):
                h, w = size + int(rng.integers(0, size // 2)), size + int(rng.integers(0, size // 2))
                pixels = rng.integers(0, 8, size=(h, w, 3), dtype=np.uint8)
                pixels[..., 0] += np.uint8(CLASS_STEP * c % 248)
                pixels[..., 1] += np.uint8(100)
                Image.fromarray(pixels).save(folder / f"{wnid}_{k}.JPEG", "JPEG", quality=95)
    return root
