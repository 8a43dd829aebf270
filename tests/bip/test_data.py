"""BiP's loaders: TinyImageNet pads with the mean colour (it normalises before the pad-crop), CIFAR with
zeros; ImageNet class folders and LMDB files go through the shared torch ImageNet loader."""

import numpy as np
import pytest
import torch

from bip_torch.data import IMAGENET_MEAN, IMAGENET_STD, load_data
from shared.torch_train import DistContext, TensorLoader
from tests.shared.test_tinyimagenet import make_fake_tiny

pytestmark = pytest.mark.torch
CPU = torch.device("cpu")


def test_mean_padding_is_zero_after_normalisation_and_zero_padding_is_not():
    images = np.full((2, 8, 8, 3), 200, np.uint8)
    zero, offsets = torch.zeros(2, dtype=torch.long), torch.zeros(2, dtype=torch.bool)
    out = {}
    for pad_value in ("mean", 0.0):
        tl = TensorLoader(images, np.zeros(2), 2, CPU, IMAGENET_MEAN, IMAGENET_STD, train=True, pad=2,
                          pad_value=pad_value)  # fmt: skip
        # crop at offset (0, 0): the top two rows and left two columns are padding
        out[pad_value] = tl._normalise(tl._augment(tl.images.float(), zero, zero, offsets))
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    assert out["mean"][:, :, :2].abs().max() < 1e-5  # the mean colour, normalised: 0
    assert torch.allclose(out[0.0][:, :, :2], (0 - mean) / std * torch.ones(2, 3, 2, 8), atol=1e-5)
    inside = (200 / 255 - mean) / std  # the image itself is untouched by either padding
    for v in out.values():
        assert torch.allclose(v[:, :, 2:, 2:], inside.expand(2, 3, 6, 6), atol=1e-5)
    with pytest.raises(Exception, match="pad_value"):
        TensorLoader(images, np.zeros(2), 2, CPU, IMAGENET_MEAN, IMAGENET_STD, train=True, pad_value="edge")


def test_tinyimagenet_loader_pads_with_the_mean_and_cifar_style_data_with_zeros(tmp_path):
    folder = make_fake_tiny(tmp_path)
    d = load_data("TinyImageNet", folder, 6, 10, CPU, DistContext())
    assert d.train.pad == 4 and d.train.pad_value == "mean" and d.val.pad_value == "mean"
    assert d.num_classes == 3 and len(d.test.labels) == 3 * 25  # the documented 25-per-class test half
    d = load_data("digits", None, 16, 10, CPU, DistContext(), train_limit=32)
    assert d.train.pad_value == 0.0


def test_imagenet_folders_and_lmdb_go_through_the_shared_loader(tmp_path):
    from PIL import Image

    from shared.data.imagenet import folder_to_lmdb

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in ("n00000001", "n00000002"):
            (tmp_path / split / c).mkdir(parents=True)
            for i in range(2):
                img = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
                Image.fromarray(img).save(tmp_path / split / c / f"{c}_{i}.JPEG")
        folder_to_lmdb(tmp_path / split, tmp_path / f"{split}.lmdb")
    for dataset in ("ImageNetOrigin", "ImageNet"):  # class folders; BiP's LMDB files
        d = load_data(dataset, tmp_path, 2, 2, CPU, DistContext(), num_workers=0)
        x, y = next(iter(d.train))
        assert x.shape == (2, 3, 224, 224) and y.shape == (2,)
        assert d.num_classes == (2 if dataset == "ImageNetOrigin" else 1000)  # LMDB files carry no class list
        assert d.identity["n"] == 4 and len(d.val) == len(d.train) == 2  # "val": a second shuffle of train
