"""CIFAR reader: the real subset, the official layout with any N, and bad inputs."""

import errno
import hashlib
import io
import os
import pickle
import tarfile

import numpy as np
import pytest

from shared.data import cifar
from shared.data.__main__ import main as data_main
from shared.errors import MalformedError, UserError


def _write_batch(path, images_nhwc, labels, key="labels", protocol=2):
    data = images_nhwc.transpose(0, 3, 1, 2).reshape(len(images_nhwc), -1)
    with open(path, "wb") as f:
        pickle.dump({"batch_label": "x", key: list(map(int, labels)), "data": data}, f, protocol=protocol)


def make_fake_cifar10(root, n_per_file=7, seed=0):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    all_imgs = []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        imgs = rng.integers(0, 256, (n_per_file, 32, 32, 3), dtype=np.uint8)
        _write_batch(folder / name, imgs, rng.integers(0, 10, n_per_file))
        all_imgs.append(imgs)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, f, protocol=2)
    return folder, all_imgs


@pytest.mark.realdata
def test_reads_real_subset(cifar_dir):
    train = cifar.load_cifar(cifar_dir, "cifar10", "train")
    test = cifar.load_cifar(cifar_dir, "cifar10", "test")
    assert len(train) == 4660 and len(test) == 932
    assert test.labels[:5].tolist() == [3, 8, 8, 0, 6]
    assert train.images.shape == (4660, 32, 32, 3) and train.images.dtype == np.uint8
    assert test.classes[:2] == ("airplane", "automobile")
    # the parent folder works too (one level of search)
    assert len(cifar.load_cifar(cifar_dir.parent, "cifar10", "test")) == 932


def test_official_layout_any_n_and_pixel_order(tmp_path):
    folder, imgs = make_fake_cifar10(tmp_path, n_per_file=5)
    train = cifar.load_cifar(tmp_path, "cifar10", "train")
    assert len(train) == 25
    np.testing.assert_array_equal(train.images[:5], imgs[0])  # planar RGB -> NHWC round trip
    assert train.classes[3] == "c3"


def test_cifar100_layout(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for name, n in (("train", 6), ("test", 4)):
        _write_batch(folder / name, rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), [99] * n, key="fine_labels")
    test = cifar.load_cifar(tmp_path, "cifar100", "test")
    assert len(test) == 4 and test.labels.tolist() == [99] * 4 and test.num_classes == 100


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        cifar.load_cifar(tmp_path / "nope", "cifar10", "train")
    with pytest.raises(UserError, match="no cifar10 batch files"):
        cifar.load_cifar(tmp_path, "cifar10", "train")


def test_truncated_batch_file(tmp_path):
    folder, _ = make_fake_cifar10(tmp_path)
    path = folder / "data_batch_3"
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(MalformedError, match="data_batch_3.*truncated"):
        cifar.load_cifar(tmp_path, "cifar10", "train")


def test_pickle_that_runs_code_is_refused(tmp_path):
    folder, _ = make_fake_cifar10(tmp_path)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    with open(folder / "test_batch", "wb") as f:
        pickle.dump({"data": Evil(), "labels": []}, f)
    with pytest.raises(MalformedError, match="refusing to load builtins.print"):
        cifar.load_cifar(tmp_path, "cifar10", "test")


def _fake_archive(tmp_path):
    src = tmp_path / "src"
    make_fake_cifar10(src)
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    return archive


def test_archive_with_wrong_checksum_is_refused(tmp_path):
    archive = _fake_archive(tmp_path)
    with pytest.raises(UserError, match="md5 .* does not match the official cifar10 archive"):
        cifar.prepare_cifar("cifar10", tmp_path / "out", archive=archive)
    assert not (tmp_path / "out" / "cifar-10-batches-py").exists()


def test_archive_with_official_checksum_is_extracted(tmp_path, monkeypatch):
    archive = _fake_archive(tmp_path)
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    layout = cifar.LAYOUTS["cifar10"]
    monkeypatch.setitem(cifar.LAYOUTS, "cifar10", cifar.CifarLayout(**{**layout.__dict__, "md5": md5}))
    folder = cifar.prepare_cifar("cifar10", tmp_path / "out", archive=archive)
    assert len(cifar.load_cifar(folder, "cifar10", "train")) == 35


def test_download_offline_gives_one_clear_error(tmp_path, capsys):
    rc = data_main(["cifar10", "--out", str(tmp_path), "--url", "http://127.0.0.1:9/cifar-10-python.tar.gz"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: cannot download cifar10") and "--archive" in err
    assert err.count("\n") == 1  # one line, no traceback


def test_from_existing_folder(tmp_path, capsys):
    make_fake_cifar10(tmp_path / "mine")
    rc = data_main(["cifar10", "--out", str(tmp_path / "out"), "--from", str(tmp_path / "mine")])
    assert rc == 0 and "35 train, 7 test" in capsys.readouterr().out


def test_digits_embedded_split_is_fixed():
    from shared.data import load_digits_cifar

    train, test = load_digits_cifar("train"), load_digits_cifar("test")
    assert (len(train), len(test)) == (1437, 360)
    assert train.images.shape[1:] == (32, 32, 3) and train.images.dtype == np.uint8
    assert set(np.unique(train.labels)) == set(range(10))
    assert train.fingerprint() == load_digits_cifar("train").fingerprint()
    # grey: three equal channels; 4x nearest-neighbour upscaling: 4x4 constant blocks
    img = train.images[0]
    assert (img[..., 0] == img[..., 2]).all() and (img[:4, :4, 0] == img[0, 0, 0]).all()


def test_safe_pickle_roundtrip_numpy():
    from shared import safe_pickle

    arr = np.arange(12, dtype=np.float32).reshape(3, 4)
    buf = io.BytesIO()
    pickle.dump({"w": arr, "n": 3}, buf, protocol=4)
    out = safe_pickle.loads(buf.getvalue())
    np.testing.assert_array_equal(out["w"], arr)


# ----------------------------------------------------------------------------------------------------
# Malformed batch and meta files: one message naming the file and the field
# ----------------------------------------------------------------------------------------------------


def _replace_test_batch(folder, batch, protocol=2):
    with open(folder / "test_batch", "wb") as f:
        pickle.dump(batch, f, protocol=protocol)


GOOD_DATA = np.zeros((2, 3072), np.uint8)


@pytest.mark.parametrize(
    "batch,message",
    [
        ({"data": GOOD_DATA, "labels": ["cat", "dog"]}, r"field 'labels' must hold integer labels, got str .*'cat'"),
        ({"data": [[0] * 3072, [0] * 5], "labels": [1, 2]}, r"field 'data' is ragged"),
        ({"data": GOOD_DATA, "labels": [1.0, 3.5]}, r"field .labels. must hold whole-number labels, got 3.5 at index"),
        ({"data": GOOD_DATA, "labels": [[1], [2]]}, r"field 'labels' must be a flat list of 2 labels, got .*\(2, 1\)"),
        ({"data": GOOD_DATA, "labels": [1, 2, 3]}, r"field 'labels' has 3 labels for 2 images"),
        ({"data": GOOD_DATA, "labels": [1, 10]}, r"field 'labels': label 10 at index 1 is outside \[0, 10\)"),
        ({"data": GOOD_DATA, "labels": [True, False]}, r"field 'labels' must hold integer labels, got bool"),
        ({"data": GOOD_DATA.astype(np.int64), "labels": [1, 2]}, r"field 'data' must be a uint8 array .*int64"),
        ({"labels": [1, 2]}, r"field 'data' is missing"),
        ([GOOD_DATA], r"expected a pickled dict, got list"),
    ],
)
def test_malformed_batch_fields(tmp_path, batch, message):
    folder, _ = make_fake_cifar10(tmp_path)
    _replace_test_batch(folder, batch)
    with pytest.raises(MalformedError, match=r"test_batch: " + message):
        cifar.load_cifar(tmp_path, "cifar10", "test")


def test_whole_number_float_labels_are_read_exactly(tmp_path):
    folder, _ = make_fake_cifar10(tmp_path)
    _replace_test_batch(folder, {"data": GOOD_DATA, "labels": np.array([9.0, 0.0])})
    assert cifar.load_cifar(tmp_path, "cifar10", "test").labels.tolist() == [9, 0]


@pytest.mark.parametrize("protocol", [2, 4])
@pytest.mark.parametrize("data", [np.zeros((0, 3072), np.uint8), []])
def test_empty_batch_is_valid(tmp_path, protocol, data):
    # protocol 2 rebuilds an empty array's buffer with __builtin__.bytes(), which must not be refused
    folder, _ = make_fake_cifar10(tmp_path, n_per_file=3)
    _replace_test_batch(folder, {"data": data, "labels": []}, protocol=protocol)
    assert len(cifar.load_cifar(tmp_path, "cifar10", "test")) == 0
    assert len(cifar.load_cifar(tmp_path, "cifar10", "train")) == 15


@pytest.mark.parametrize(
    "content,message",
    [
        (b"\x80\x02}q\x00(X", r"batches.meta: cannot read the CIFAR meta file \(truncated or corrupt\?\)"),
        (pickle.dumps(["airplane"]), r"batches.meta: expected a pickled dict, got list"),
        (pickle.dumps({"label_names": 5}), r"batches.meta: field 'label_names' must be a list of 10 class names"),
        (pickle.dumps({"label_names": ["a"] * 9}), r"field 'label_names' must be a list of 10 .* length 9"),
        (pickle.dumps({"other": 1}), r"field 'label_names' .* got nothing \(the field is missing\)"),
    ],
)
def test_corrupt_meta_file(tmp_path, content, message):
    folder, _ = make_fake_cifar10(tmp_path)
    (folder / "batches.meta").write_bytes(content)
    with pytest.raises(MalformedError, match=message):
        cifar.load_cifar(tmp_path, "cifar10", "test")


def test_missing_meta_file_gives_numbered_classes(tmp_path):
    folder, _ = make_fake_cifar10(tmp_path)
    (folder / "batches.meta").unlink()
    assert cifar.load_cifar(tmp_path, "cifar10", "test").classes == tuple(str(i) for i in range(10))


def test_malformed_batch_through_the_cli_is_one_line(tmp_path, capsys):
    make_fake_cifar10(tmp_path / "mine")
    _replace_test_batch(tmp_path / "mine" / "cifar-10-batches-py", {"data": GOOD_DATA, "labels": ["a", "b"]})
    rc = data_main(["cifar10", "--out", str(tmp_path / "out"), "--from", str(tmp_path / "mine")])
    err = capsys.readouterr().err
    assert rc == 2 and "test_batch: field 'labels'" in err and err.count("\n") == 1
    assert not (tmp_path / "out" / "cifar-10-batches-py").exists()


def test_out_under_a_file_or_unwritable(tmp_path, capsys, monkeypatch):
    make_fake_cifar10(tmp_path / "mine")
    (tmp_path / "plain").write_text("x")
    rc = data_main(["cifar10", "--out", str(tmp_path / "plain" / "d"), "--from", str(tmp_path / "mine")])
    err = capsys.readouterr().err
    assert rc == 2 and f"{tmp_path / 'plain'} is a file, not a folder" in err and err.count("\n") == 1

    def full(src, dst, **kwargs):
        os.makedirs(dst)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cifar.shutil, "copytree", full)
    rc = data_main(["cifar10", "--out", str(tmp_path / "out"), "--from", str(tmp_path / "mine")])
    err = capsys.readouterr().err
    assert rc == 2 and "cifar-10-batches-py: no space left on the device" in err and err.count("\n") == 1
    assert list((tmp_path / "out").iterdir()) == []  # the half copy is removed
