"""CIFAR-10's binary layout (cifar-10-batches-bin), written here byte by byte and read back, directly
and through shared.data.load_cifar's fallback."""

from __future__ import annotations

import numpy as np
import pytest

from shared.data import cifar_bin, load_cifar
from shared.errors import MalformedError, UserError


def write_records(path, labels, images):
    """One label byte, then the R, G and B planes (32 x 32 each, row-major) per record."""
    with open(path, "wb") as f:
        for label, img in zip(labels, images):
            f.write(bytes([label]))
            for ch in range(3):
                f.write(bytes(int(v) for v in img[:, :, ch].reshape(-1)))


@pytest.fixture
def bin_root(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    rng = np.random.default_rng(0)
    data = {}
    for k, name in enumerate(cifar_bin.TRAIN_FILES + cifar_bin.TEST_FILES):
        n = 2 + k % 2
        images = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
        labels = [(3 * k + i) % 10 for i in range(n)]
        write_records(folder / name, labels, images)
        data[name] = (images, labels)
    (folder / "batches.meta.txt").write_text("\n".join(f"class{i}" for i in range(10)) + "\n\n")
    return tmp_path, data


def test_binary_records_read_back_exactly(bin_root):
    root, data = bin_root
    split = cifar_bin.load_cifar_bin(root, "train")
    want_images = np.concatenate([data[f][0] for f in cifar_bin.TRAIN_FILES])
    want_labels = np.concatenate([data[f][1] for f in cifar_bin.TRAIN_FILES])
    np.testing.assert_array_equal(split.images, want_images)
    np.testing.assert_array_equal(split.labels, want_labels)
    assert split.classes[3] == "class3"
    # a pixel by hand: record 0 of data_batch_1, green plane, row 1, column 2 is byte 1 + 1024 + 32 + 2
    raw = (root / "cifar-10-batches-bin" / "data_batch_1.bin").read_bytes()
    assert split.images[0, 1, 2, 1] == raw[1 + 1024 + 32 + 2]


def test_load_cifar_falls_back_to_the_binary_layout(bin_root):
    root, data = bin_root
    test = load_cifar(root, "cifar10", "test")
    np.testing.assert_array_equal(test.images, data["test_batch.bin"][0])
    assert test.source.endswith("cifar-10-batches-bin")


def test_truncated_file_and_bad_label_are_named(bin_root):
    root, _ = bin_root
    path = root / "cifar-10-batches-bin" / "test_batch.bin"
    raw = path.read_bytes()
    path.write_bytes(raw[:-5])
    with pytest.raises(MalformedError, match="test_batch.bin.*not a whole number of 3073-byte"):
        cifar_bin.load_cifar_bin(root, "test")
    path.write_bytes(bytes([12]) + raw[1:])
    with pytest.raises(MalformedError, match="label 12"):
        cifar_bin.load_cifar_bin(root, "test")


def test_no_layout_at_all_still_names_the_python_layout(tmp_path):
    with pytest.raises(UserError, match="cifar-10-batches-py"):
        load_cifar(tmp_path, "cifar10", "train")
