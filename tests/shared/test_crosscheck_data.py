"""The data readers and the on-device augmentation against torchvision's own implementations.

- `shared.data.imagenet.imagefolder_samples` against `torchvision.datasets.ImageFolder` on a generated
  tree (nested folders, mixed-case extensions, files that are no images, names whose sort order is
  tricky): same classes, same (path, label) list in the same order, both refuse an empty class.
- `shared.data.cifar.load_cifar` against `torchvision.datasets.CIFAR10` on the real subset.
- `shared.torch_train.TensorLoader` (what it does: ZERO padding by `pad` pixels, a crop at offsets
  (dy, dx) drawn PER IMAGE, a horizontal flip drawn per image, all from a CPU generator seeded with
  seed * 100003 + epoch, drawn for the whole global batch) against torchvision's pad + crop + hflip.
"""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.torch

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")
from torchvision.transforms.v2 import functional as TF  # noqa: E402

from shared.data.cifar import CIFAR_MEAN, CIFAR_STD, load_cifar  # noqa: E402
from shared.data.imagenet import imagefolder_samples  # noqa: E402
from shared.errors import UserError  # noqa: E402
from shared.torch_train import TensorLoader  # noqa: E402

# ----------------------------------------------------------------------------------------------------
# ImageFolder order
# ----------------------------------------------------------------------------------------------------

TREE = [
    # class folders in an order where code-point sorting matters: "Zebra" < "apple" < "b-1" < "b_10" < "b_9"
    "apple/x.JPG",
    "apple/a.jpeg",
    "apple/B.png",
    "apple/notes.txt",  # not an image: skipped by both
    "apple/README",  # no extension: skipped
    "apple/sub/z.PnG",
    "apple/sub-dir/q.bmp",  # "sub-dir" sorts before "sub/..." as os.walk tuples
    "apple/sub/deeper/k.webp",
    "apple/.hidden.jpg",  # a dot file with an image extension: both keep it
    "Zebra/1.tif",
    "Zebra/10.TIFF",
    "Zebra/2.ppm",
    "Zebra/image.jpg.bak",  # not an image extension
    "b-1/only/nested/deep.pgm",
    "b_10/a.Jpg",
    "b_9/a.jpg",
    "b_9/a.jpg.txt",
]


def _make_tree(root, files):
    for rel in files:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")  # listing never opens the files
    return root


def test_imagefolder_order_matches_torchvision(tmp_path):
    root = _make_tree(tmp_path / "train", TREE)
    (root / "stray.jpg").write_bytes(b"")  # a file at the top level is no class
    ours, classes = imagefolder_samples(root)
    theirs = torchvision.datasets.ImageFolder(str(root))
    assert classes == theirs.classes == ["Zebra", "apple", "b-1", "b_10", "b_9"]
    assert [(str(p), label) for p, label in ours] == theirs.samples
    assert len(ours) == 13  # the 17 files less 4 that are no images
    # the validation folder's labels follow the train folder's classes
    assert imagefolder_samples(_make_tree(tmp_path / "val", ["Zebra/v.jpg", "apple/v.png"]))[1] == ["Zebra", "apple"]


def test_empty_class_refused_by_both(tmp_path):
    root = _make_tree(tmp_path / "train", ["a/x.jpg", "b/notes.txt"])
    with pytest.raises(FileNotFoundError):
        torchvision.datasets.ImageFolder(str(root))
    with pytest.raises(UserError, match="no image files in class folder"):
        imagefolder_samples(root)


# ----------------------------------------------------------------------------------------------------
# CIFAR-10 reader
# ----------------------------------------------------------------------------------------------------


class _SubsetCIFAR10(torchvision.datasets.CIFAR10):
    """torchvision's CIFAR-10 reader without its whole-file md5 check: the check compares each batch
    file with the official archive's md5, which a subset (932 images per file instead of 10,000)
    cannot match. Everything else (unpickling, the planar-to-HWC reshape, the labels, the class names
    from batches.meta, whose md5 is still checked: that file is the official one) runs unchanged."""

    def _check_integrity(self) -> bool:
        return True


@pytest.mark.realdata
@pytest.mark.parametrize("split", ["train", "test"])
def test_cifar_reader_matches_torchvision(cifar_dir, split):
    if cifar_dir.name != "cifar-10-batches-py":
        pytest.skip(f"torchvision expects the folder cifar-10-batches-py, got {cifar_dir}")
    ours = load_cifar(cifar_dir, "cifar10", split)
    theirs = _SubsetCIFAR10(str(cifar_dir.parent), train=split == "train", download=False)
    assert ours.images.shape == theirs.data.shape == ((4660 if split == "train" else 932), 32, 32, 3)
    np.testing.assert_array_equal(ours.images, theirs.data)
    np.testing.assert_array_equal(ours.labels, np.asarray(theirs.targets))
    assert list(ours.classes) == theirs.classes


# ----------------------------------------------------------------------------------------------------
# On-device augmentation
# ----------------------------------------------------------------------------------------------------


def _images(n, seed=0):
    """uint8 NHWC images with no zero pixel, so that zero padding is told apart from reflect/edge."""
    return np.random.default_rng(seed).integers(1, 256, (n, 32, 32, 3), dtype=np.uint8)


def _torchvision_augment(img_chw: torch.Tensor, dy: int, dx: int, flip: bool, pad: int = 4) -> torch.Tensor:
    """torchvision's RandomCrop(32, padding=pad) (fill 0, constant) + RandomHorizontalFlip for one image,
    with the offsets and the flip given instead of drawn."""
    out = TF.crop(TF.pad(img_chw, [pad], fill=0, padding_mode="constant"), dy, dx, 32, 32)
    return TF.horizontal_flip(out) if flip else out


def _loader(images, batch, seed=3):
    labels = np.arange(len(images)) % 10
    return TensorLoader(images, labels, batch, torch.device("cpu"), CIFAR_MEAN, CIFAR_STD, train=True, seed=seed)


def test_augment_matches_torchvision_for_given_offsets():
    images = _images(6)
    loader = _loader(images, 6)
    dy = torch.tensor([0, 8, 4, 1, 7, 3])  # the extremes 0 and 2 * pad and values between
    dx = torch.tensor([8, 0, 4, 6, 2, 5])
    flip = torch.tensor([False, True, False, True, True, False])
    x = torch.as_tensor(images).permute(0, 3, 1, 2).float()
    got = loader._augment(x, dy, dx, flip)
    for i in range(6):
        want = _torchvision_augment(x[i], int(dy[i]), int(dx[i]), bool(flip[i]))
        assert torch.equal(got[i], want), f"image {i}"
    # reflect padding would differ at the borders of an off-centre crop (this test can tell)
    reflect = TF.crop(TF.pad(x[0], [4], padding_mode="reflect"), 0, 8, 32, 32)
    assert not torch.equal(got[0], reflect)


def test_loader_batch_is_torchvision_with_per_image_draws():
    """One epoch's first batch equals torchvision's transforms applied image by image with the offsets
    and flips drawn from the loader's generator in its order (permutation, dy, dx, flip); the draws
    differ between the images of one batch (per image, not per batch)."""
    images = _images(40, seed=1)
    loader = _loader(images, 16, seed=3)
    loader.set_epoch(2)
    x, y = next(iter(loader))
    gen = torch.Generator().manual_seed(3 * 100_003 + 2)
    order = torch.randperm(40, generator=gen)[:16]
    dy = torch.randint(0, 9, (16,), generator=gen)
    dx = torch.randint(0, 9, (16,), generator=gen)
    flip = torch.rand(16, generator=gen) < 0.5
    assert len(set(zip(dy.tolist(), dx.tolist()))) > 8 and 0 < int(flip.sum()) < 16
    mean = torch.tensor(CIFAR_MEAN).view(3, 1, 1) * 255
    std = torch.tensor(CIFAR_STD).view(3, 1, 1) * 255
    for i in range(16):
        img = torch.as_tensor(images[int(order[i])]).permute(2, 0, 1).float()
        want = (_torchvision_augment(img, int(dy[i]), int(dx[i]), bool(flip[i])) - mean) / std
        torch.testing.assert_close(x[i], want, rtol=0, atol=1e-5)
    assert torch.equal(y, torch.as_tensor(order % 10))
