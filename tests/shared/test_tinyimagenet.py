"""TinyImageNet: sorted-wnid labels, the deterministic 25/25 val/test split, loading, LMDB, bad folders."""

import io
import shutil

import numpy as np
import pytest
from PIL import Image

from shared.data import tinyimagenet as tin
from shared.data.__main__ import main as data_main
from shared.data.lmdb_store import LmdbImageDataset
from shared.errors import MalformedError, UserError

WNIDS = ["n09999999", "n01000001", "n05000005"]  # sorted: n01000001 (0), n05000005 (1), n09999999 (2)
SORTED = sorted(WNIDS)
N_CLASSES, TRAIN_PER_CLASS = 3, 2


def jpeg(color, size=(64, 64)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, tuple(color)).save(buf, "JPEG", quality=100, subsampling=0)
    return buf.getvalue()


def val_class(k: int) -> str:
    """Official-style interleaving: val_k belongs to WNIDS[k % 3] (so val_10 and val_4 share a class)."""
    return WNIDS[k % N_CLASSES]


def make_fake_tiny(root, val_per_class=50, reverse_annotations=False):
    """A small tiny-imagenet-200: 3 wnids, 2 train images each, 50 val images each; val_k has red = k."""
    folder = root / "tiny-imagenet-200"
    (folder / "val" / "images").mkdir(parents=True)
    (folder / "wnids.txt").write_text("\n".join(WNIDS) + "\n")
    for ci, wnid in enumerate(WNIDS):
        images = folder / "train" / wnid / "images"
        images.mkdir(parents=True)
        for j in range(TRAIN_PER_CLASS):
            (images / f"{wnid}_{j}.JPEG").write_bytes(jpeg((200, 10 * ci, j)))
        (folder / "train" / wnid / f"{wnid}_boxes.txt").write_text("")
    lines = []
    for k in range(val_per_class * N_CLASSES):
        (folder / "val" / "images" / f"val_{k}.JPEG").write_bytes(jpeg((k, 255 - k, 0)))
        lines.append(f"val_{k}.JPEG\t{val_class(k)}\t0\t1\t60\t62")
    if reverse_annotations:
        lines.reverse()
    (folder / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    (folder / "test" / "images").mkdir(parents=True)
    (folder / "test" / "images" / "test_0.JPEG").write_bytes(jpeg((1, 2, 3)))
    return folder


def snapshot(root):
    return sorted((str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*"))


def val_index(path) -> int:
    return int(path.stem.split("_")[1])


@pytest.fixture
def tiny(tmp_path):
    return make_fake_tiny(tmp_path)


def test_labels_follow_sorted_wnids(tiny):
    samples, classes = tin.tinyimagenet_samples(tiny, "train")
    assert classes == SORTED
    expected = [(w, i) for i, w in enumerate(SORTED) for _ in range(TRAIN_PER_CLASS)]
    assert [(p.parent.parent.name, y) for p, y in samples] == expected
    val_all, _ = tin.tinyimagenet_samples(tiny.parent, "val-all")  # the parent folder works too
    assert len(val_all) == 150
    for path, label in val_all:
        assert SORTED[label] == val_class(val_index(path))


def test_val_test_split_is_numeric_sorted_25_25(tiny):
    val, _ = tin.tinyimagenet_samples(tiny, "val")
    test, _ = tin.tinyimagenet_samples(tiny, "test")
    val_all, _ = tin.tinyimagenet_samples(tiny, "val-all")
    assert len(val) == len(test) == 75
    for label, wnid in enumerate(SORTED):
        r = WNIDS.index(wnid)  # this class holds val_r, val_{r+3}, val_{r+6}, ...
        members = [r + 3 * j for j in range(50)]
        assert [val_index(p) for p, y in val if y == label] == members[:25]
        assert [val_index(p) for p, y in test if y == label] == members[25:]
    # numeric, not string order: val_4 before val_10 (the string sort would put val_10 first)
    ids = [val_index(p) for p, _ in val]
    assert ids.index(4) < ids.index(10)
    assert set(val).isdisjoint(test) and set(val) | set(test) == set(val_all)
    assert [y for _, y in val] == sorted(y for _, y in val)  # class by class


def test_split_does_not_depend_on_annotation_or_listing_order(tmp_path):
    a = make_fake_tiny(tmp_path / "a")
    b = make_fake_tiny(tmp_path / "b", reverse_annotations=True)
    for split in ("val", "test"):
        sa, _ = tin.tinyimagenet_samples(a, split)
        sb, _ = tin.tinyimagenet_samples(b, split)
        assert [(p.name, y) for p, y in sa] == [(p.name, y) for p, y in sb]
        assert sa == tin.tinyimagenet_samples(a, split)[0]  # and repeatable


def test_numeric_key():
    names = ["val_10.JPEG", "val_2.JPEG", "val_1.JPEG", "val_100.JPEG", "val_02.JPEG"]
    assert sorted(names, key=tin.numeric_key) == [
        "val_1.JPEG",
        "val_02.JPEG",
        "val_2.JPEG",
        "val_10.JPEG",
        "val_100.JPEG",
    ]


def test_load_arrays(tiny):
    test = tin.load_tinyimagenet(tiny, "test")
    assert test.images.shape == (75, 64, 64, 3) and test.images.dtype == np.uint8
    samples, _ = tin.tinyimagenet_samples(tiny, "test")
    red = test.images[:, 10, 10, 0].astype(int)
    assert np.abs(red - [val_index(p) for p, _ in samples]).max() <= 1  # JPEG: within 1 of the written value
    assert test.labels.tolist() == [y for _, y in samples] and test.classes == tuple(SORTED)
    train = tin.load_tinyimagenet(tiny, "train", limit=3)
    assert len(train) == 3 and train.labels.tolist() == [0, 0, 1]


def test_wrong_image_size_is_an_error(tiny):
    wnid = SORTED[0]
    (tiny / "train" / wnid / "images" / f"{wnid}_0.JPEG").write_bytes(jpeg((1, 1, 1), size=(32, 48)))
    with pytest.raises(MalformedError, match=f"{wnid}_0.JPEG: expected a 64x64 image, got 32x48"):
        tin.load_tinyimagenet(tiny, "train")


def test_users_folder_is_never_modified(tiny, tmp_path, capsys):
    before = snapshot(tiny)
    for split in tin.SPLITS:
        tin.tinyimagenet_samples(tiny, split)
        tin.load_tinyimagenet(tiny, split)
    tin.pack_tinyimagenet_lmdb(tiny, tmp_path / "lmdb")
    assert data_main(["tinyimagenet", "--root", str(tiny)]) == 0
    assert snapshot(tiny) == before
    out = capsys.readouterr().out
    assert "3 classes; 6 train, 150 official val = 75 val + 75 test" in out


def test_pack_lmdb_via_cli(tiny, tmp_path, capsys):
    out = tmp_path / "packed"
    assert data_main(["tinyimagenet", "--root", str(tiny), "--lmdb-out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["test.lmdb", "train.lmdb", "val.lmdb"]
    assert all(p.is_file() for p in out.iterdir())
    samples, _ = tin.tinyimagenet_samples(tiny, "test")
    with LmdbImageDataset(out / "test.lmdb") as ds:
        assert len(ds) == 75
        assert [ds[i] for i in (0, 74)] == [(p.read_bytes(), y) for p, y in (samples[0], samples[74])]
    with LmdbImageDataset(out / "train.lmdb") as ds:
        assert ds.labels().tolist() == [0, 0, 1, 1, 2, 2]
    capsys.readouterr()
    rc = data_main(["tinyimagenet", "--root", str(tiny), "--lmdb-out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "already exist" in err and err.count("\n") == 1


def test_missing_folder_and_annotations(tmp_path, capsys):
    with pytest.raises(UserError, match="does not exist"):
        tin.tinyimagenet_samples(tmp_path / "nope", "train")
    with pytest.raises(UserError, match="not a tiny-imagenet-200 folder"):
        tin.tinyimagenet_samples(tmp_path, "train")
    folder = make_fake_tiny(tmp_path)
    (folder / "val" / "val_annotations.txt").unlink()
    with pytest.raises(UserError, match="val_annotations.txt does not exist"):
        tin.tinyimagenet_samples(folder, "val")
    assert len(tin.tinyimagenet_samples(folder, "train")[0]) == 6  # train does not need val
    rc = data_main(["tinyimagenet", "--root", str(folder)])
    err = capsys.readouterr().err
    assert rc == 2 and "val_annotations.txt does not exist" in err and err.count("\n") == 1


def test_bad_annotations(tiny):
    ann = tiny / "val" / "val_annotations.txt"
    good = ann.read_text()
    ann.write_text(good.replace("val_7.JPEG\tn01000001", "val_7.JPEG\tn00000000"))
    with pytest.raises(MalformedError, match=r"val_annotations.txt:8: unknown wnid 'n00000000'"):
        tin.tinyimagenet_samples(tiny, "val-all")
    ann.write_text(good)
    (tiny / "val" / "images" / "val_5.JPEG").unlink()
    with pytest.raises(MalformedError, match=r"val_annotations.txt:6: .*val_5.JPEG does not exist"):
        tin.tinyimagenet_samples(tiny, "test")
    (tiny / "val" / "images" / "val_5.JPEG").write_bytes(jpeg((5, 5, 5)))
    ann.write_text(good + "../../etc/passwd\tn01000001\n")
    with pytest.raises(MalformedError, match="not a plain file name"):
        tin.tinyimagenet_samples(tiny, "val")
    ann.write_text(good)
    (tiny / "wnids.txt").write_text("\n".join(WNIDS + ["n07777777"]))
    with pytest.raises(MalformedError, match=r"do not match .*wnids.txt \(no folder for: \['n07777777'\]"):
        tin.tinyimagenet_samples(tiny, "train")


def test_class_with_fewer_than_50_val_images(tiny):
    ann = tiny / "val" / "val_annotations.txt"
    lines = ann.read_text().splitlines()
    dropped = [line for line in lines if line.split("\t")[0] == "val_149.JPEG"]  # a class-2-in-WNIDS image
    ann.write_text("\n".join(line for line in lines if line not in dropped) + "\n")
    (tiny / "val" / "images" / "val_149.JPEG").unlink()
    with pytest.raises(
        MalformedError,
        match=r"25/25 val/test split needs 50 val images per class; "
        r"1 class\(es\) have fewer: n05000005 \(49\)",
    ):
        tin.tinyimagenet_samples(tiny, "test")
    assert len(tin.tinyimagenet_samples(tiny, "val-all")[0]) == 149


def test_folder_rewritten_by_bip_is_refused(tiny):
    # what BiP's code leaves behind: val/<wnid>/images, test/<wnid>/images, test_original/
    shutil.move(tiny / "test", tiny / "test_original")
    for wnid in WNIDS:
        (tiny / "val" / wnid / "images").mkdir(parents=True)
    shutil.rmtree(tiny / "val" / "images")
    with pytest.raises(UserError, match="rewritten in place by BiP's code"):
        tin.tinyimagenet_samples(tiny, "test")
