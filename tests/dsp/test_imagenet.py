"""The ImageNet path on a generated image folder and on its LMDB form: group learning, pruning, packing."""

import numpy as np
import pytest
import torch

from dsp_torch.checkpoints import load_checkpoint, model_from_checkpoint
from dsp_torch.imagenet import main as imagenet_main
from dsp_torch.pack import pack

pytestmark = [pytest.mark.torch, pytest.mark.slow]


@pytest.fixture(scope="module")
def image_folders(tmp_path_factory):
    from PIL import Image

    from shared.data.imagenet import folder_to_lmdb

    root = tmp_path_factory.mktemp("imagenet")
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in ("n00000001", "n00000002"):
            d = root / split / c
            d.mkdir(parents=True)
            for i in range(4):
                Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(d / f"{c}_{i}.JPEG")
    folder_to_lmdb(root / "val", root / "val.lmdb")
    return root


def test_imagenet_dsp_finetune_pack(image_folders, tmp_path):
    common = [
        "-a",
        "resnet18",
        "--train",
        str(image_folders / "train"),
        "--image-size",
        "32",
        "-b",
        "4",
        "-j",
        "0",
        "--save-dir",
        str(tmp_path),
        "--epochs",
        "1",
        "-g",
        "2",
    ]
    assert imagenet_main(["dsp", *common, "--val", str(image_folders / "val")]) == 0
    assert (
        imagenet_main(
            [
                "finetune",
                *common,
                "--val",
                str(image_folders / "val.lmdb"),
                "-p",
                "0.6",
                "-c",
                "1",
                "--cascade-passes",
                "1",
                "--bisection-steps",
                "4",
            ]
        )
        == 0
    )
    ckpt = load_checkpoint(tmp_path / "resnet18_P0g2c0.60.pkl")
    assert ckpt["arch"]["name"] == "resnet18" and ckpt["variant"]["fp_every_nth_conv"] == 2
    assert ckpt["variant"]["recipe"] == "inferred" and 0 < ckpt["pflops"] < 100
    model = model_from_checkpoint(ckpt).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        assert (pack(model)(x) - model(x)).abs().max().item() < 1e-4
    assert (
        imagenet_main(
            [
                "eval",
                "--ckpt",
                str(tmp_path / "resnet18_P0g2c0.60.pkl"),
                "--val",
                str(image_folders / "val"),
                "--image-size",
                "32",
                "-j",
                "0",
            ]
        )
        == 0
    )
