"""ImageFolder order, BiP's LMDB format (round trip and bad files), Kaggle val sorting, CLI."""

import io
import os
import pickle

import lmdb
import numpy as np
import pytest
from PIL import Image

from shared.data import imagenet, lmdb_store
from shared.data.__main__ import main as data_main
from shared.data.lmdb_store import LmdbImageDataset
from shared.errors import MalformedError, UserError


def jpeg_bytes(color, size=(8, 8)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, tuple(color)).save(buf, "JPEG", quality=100, subsampling=0)
    return buf.getvalue()


def make_image_folder(root, counts=None):
    """Class folders with distinct 8x8 JPEGs; returns {class: [file names]}."""
    counts = counts or {"b_cls": 3, "a_cls": 2, "c_cls": 7}
    made = {}
    for ci, (name, n) in enumerate(counts.items()):
        folder = root / name
        folder.mkdir(parents=True)
        made[name] = []
        for k in range(n):
            fname = f"img{k}.JPEG"
            (folder / fname).write_bytes(jpeg_bytes((10 * k, 40 * ci, 99)))
            made[name].append(fname)
    return made


def snapshot(root):
    return sorted((str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*"))


def write_raw_lmdb(path, items):
    env = lmdb.open(str(path), subdir=False, map_size=1 << 24)
    with env.begin(write=True) as txn:
        for k, v in items.items():
            txn.put(k, v)
    env.close()
    os.unlink(f"{path}-lock")


# ----------------------------------------------------------------------------------------------------
# ImageFolder order
# ----------------------------------------------------------------------------------------------------


def test_imagefolder_order_and_labels(tmp_path):
    root = tmp_path / "tree"
    make_image_folder(root)
    (root / "a_cls" / "notes.txt").write_text("not an image")
    (root / "a_cls" / "img10.png").write_bytes(jpeg_bytes((1, 2, 3)))  # lower-case extension
    nested = root / "c_cls" / "zz"
    nested.mkdir()
    (nested / "deep.JpG").write_bytes(jpeg_bytes((5, 5, 5)))  # ImageFolder walks recursively
    samples, classes = imagenet.imagefolder_samples(root)
    assert classes == ["a_cls", "b_cls", "c_cls"]
    rel = [(str(p.relative_to(root)), y) for p, y in samples]
    assert rel[:3] == [("a_cls/img0.JPEG", 0), ("a_cls/img1.JPEG", 0), ("a_cls/img10.png", 0)]
    assert rel[3:6] == [("b_cls/img0.JPEG", 1), ("b_cls/img1.JPEG", 1), ("b_cls/img2.JPEG", 1)]
    # string order within a class, as torchvision sorts: img0, img1, img2, ..., then the sub-folder
    assert [r for r, _ in rel[6:]] == [f"c_cls/img{k}.JPEG" for k in range(7)] + ["c_cls/zz/deep.JpG"]
    assert {y for _, y in rel[6:]} == {2}


def test_imagefolder_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        imagenet.imagefolder_samples(tmp_path / "nope")
    make_image_folder(tmp_path / "t", {"a": 1, "b": 1})
    (tmp_path / "t" / "empty").mkdir()
    with pytest.raises(UserError, match="no image files in class folder.*empty"):
        imagenet.imagefolder_samples(tmp_path / "t")
    with pytest.raises(UserError, match="missing: c; unexpected: empty"):
        imagenet.imagefolder_samples(tmp_path / "t", expected_classes=["a", "b", "c"])


# ----------------------------------------------------------------------------------------------------
# LMDB format
# ----------------------------------------------------------------------------------------------------


@pytest.fixture
def packed(tmp_path):
    root = tmp_path / "tree"
    make_image_folder(root)  # 2 + 3 + 7 = 12 samples: keys b'0'..b'11'
    before = snapshot(root)
    out = tmp_path / "out" / "train.lmdb"
    n, classes = imagenet.folder_to_lmdb(root, out, commit_every=5)
    assert snapshot(root) == before
    samples, _ = imagenet.imagefolder_samples(root)
    return out, samples, n


def test_lmdb_round_trip(packed):
    out, samples, n = packed
    assert n == 12 and out.is_file()  # a single file, not a directory
    assert sorted(os.listdir(out.parent)) == ["train.lmdb"]  # no lock or temp file left behind
    with LmdbImageDataset(out) as ds:
        assert len(ds) == 12
        for i, (path, label) in enumerate(samples):
            raw, y = ds[i]
            assert raw == path.read_bytes() and y == label
        assert ds.labels().tolist() == [y for _, y in samples]
        assert ds[-1][1] == 2
        with pytest.raises(IndexError):
            ds[12]


def test_lmdb_bytes_are_bips_format(packed):
    out, samples, _ = packed
    # open exactly as BiP's reader does and read with plain pickle
    env = lmdb.open(str(out), subdir=os.path.isdir(out), readonly=True, lock=False, readahead=False, meminit=False)
    with env.begin(write=False) as txn:
        keys = pickle.loads(txn.get(b"__keys__"))
        assert keys == [str(i).encode("ascii") for i in range(12)]
        assert keys[10] == b"10" and pickle.loads(txn.get(b"__len__")) == 12
        value = txn.get(b"10")
        assert value[:2] == b"\x80\x04"  # pickle protocol 4
        raw, label = pickle.loads(value)
        assert type(raw) is bytes and type(label) is int
        assert (raw, label) == (samples[10][0].read_bytes(), samples[10][1])
        stored = [k for k, _ in txn.cursor()]
    env.close()
    # LMDB orders keys as bytes (b'10' < b'2'); the index order comes from __keys__
    assert stored.index(b"10") < stored.index(b"2")
    with LmdbImageDataset(out) as ds:
        assert [ds.key(i) for i in (1, 2, 10)] == [b"1", b"2", b"10"]


def test_lmdb_writer_refuses_existing_output_and_bad_labels(packed, tmp_path):
    out, _, _ = packed
    before = out.read_bytes()
    with pytest.raises(UserError, match="already exists"):
        lmdb_store.write_lmdb([(b"x", 0)], out)
    assert out.read_bytes() == before
    with pytest.raises(UserError, match="label must be a non-negative int"):
        lmdb_store.write_lmdb([(b"x", -1)], tmp_path / "bad.lmdb")
    with pytest.raises(UserError, match="cannot read image file .*nope.jpg"):
        lmdb_store.write_lmdb([(tmp_path / "nope.jpg", 0)], tmp_path / "bad.lmdb")
    assert not list(tmp_path.glob("*bad.lmdb*"))  # nothing half-written


def test_lmdb_from_bytes_and_decode(tmp_path):
    data = [(jpeg_bytes((200, 100, 0), size=(6, 4)), 5), (jpeg_bytes((0, 0, 250)), 0)]
    out = tmp_path / "b.lmdb"
    assert lmdb_store.write_lmdb(data, out) == 2
    ds = LmdbImageDataset(out)
    img = lmdb_store.decode_rgb(ds[0][0])
    assert img.shape == (4, 6, 3) and img.dtype == np.uint8
    assert np.abs(img.astype(int) - [200, 100, 0]).max() <= 1
    with pytest.raises(MalformedError, match="cannot decode image"):
        lmdb_store.decode_rgb(b"not an image")
    # survives pickling (DataLoader workers with spawn reopen the environment)
    clone = pickle.loads(pickle.dumps(ds))
    assert clone[1] == ds[1]
    # two readers of one file in a process share the environment; closing one leaves the other working
    other = LmdbImageDataset(out)
    ds.close()
    assert other[0][1] == 5 and clone[0][1] == 5


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_lmdb_reader_works_in_a_forked_worker(packed):
    import multiprocessing

    out, samples, _ = packed
    ds = LmdbImageDataset(out)
    with multiprocessing.get_context("fork").Pool(1) as pool:
        got = pool.map(ds.__getitem__, [0, 11])
    assert got == [ds[0], ds[11]] and got[1][0] == samples[11][0].read_bytes()


def test_lmdb_directory_form_is_read(tmp_path):
    folder = tmp_path / "dir.lmdb"
    env = lmdb.open(str(folder), map_size=1 << 24)  # subdir=True: folder/data.mdb
    with env.begin(write=True) as txn:
        txn.put(b"0", pickle.dumps((b"abc", 3), protocol=4))
        txn.put(b"__keys__", pickle.dumps([b"0"]))
        txn.put(b"__len__", pickle.dumps(1))
    env.close()
    assert LmdbImageDataset(folder)[0] == (b"abc", 3)


def test_lmdb_without_len_or_keys(tmp_path):
    value = pickle.dumps((b"abc", 1), protocol=4)
    write_raw_lmdb(tmp_path / "nolen.lmdb", {b"0": value, b"__keys__": pickle.dumps([b"0"])})
    with pytest.raises(MalformedError, match="nolen.lmdb: no __len__ key"):
        LmdbImageDataset(tmp_path / "nolen.lmdb")
    write_raw_lmdb(tmp_path / "nokeys.lmdb", {b"0": value, b"__len__": pickle.dumps(1)})
    with pytest.raises(MalformedError, match="no __keys__ key"):
        LmdbImageDataset(tmp_path / "nokeys.lmdb")
    write_raw_lmdb(
        tmp_path / "short.lmdb", {b"0": value, b"__len__": pickle.dumps(2), b"__keys__": pickle.dumps([b"0", b"1"])}
    )
    ds = LmdbImageDataset(tmp_path / "short.lmdb")
    assert ds[0] == (b"abc", 1)
    with pytest.raises(MalformedError, match=r"key b'1' \(sample 1\) listed in __keys__ is missing"):
        ds[1]
    meta = {b"__len__": pickle.dumps(3), b"__keys__": pickle.dumps([b"0"])}
    write_raw_lmdb(tmp_path / "mismatch.lmdb", meta)
    with pytest.raises(MalformedError, match="__keys__ has 1 keys but __len__ says 3"):
        LmdbImageDataset(tmp_path / "mismatch.lmdb")


def test_lmdb_value_that_is_not_a_pair(tmp_path):
    meta = {b"__len__": pickle.dumps(2), b"__keys__": pickle.dumps([b"0", b"1"])}
    write_raw_lmdb(tmp_path / "v.lmdb", {b"0": pickle.dumps(("str", 1)), b"1": b"garbage", **meta})
    ds = LmdbImageDataset(tmp_path / "v.lmdb")
    with pytest.raises(MalformedError, match=r"value of key b'0' must be a pickled \(bytes, int\) pair"):
        ds[0]
    with pytest.raises(MalformedError, match="value of key b'1' is not a readable pickle"):
        ds[1]


def test_lmdb_pickle_that_runs_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    write_raw_lmdb(
        tmp_path / "evil.lmdb",
        {b"0": pickle.dumps((b"x", Evil())), b"__len__": pickle.dumps(1), b"__keys__": pickle.dumps([b"0"])},
    )
    with pytest.raises(MalformedError, match="refusing to load (posix|os).system"):
        LmdbImageDataset(tmp_path / "evil.lmdb")[0]


def test_truncated_or_foreign_file_is_a_clear_error(packed, tmp_path):
    out, _, _ = packed
    data = out.read_bytes()
    cut = tmp_path / "cut.lmdb"
    cut.write_bytes(data[: len(data) // 2])  # reading it through mmap would SIGBUS; we check first
    with pytest.raises(MalformedError, match="cut.lmdb: truncated LMDB"):
        LmdbImageDataset(cut)
    for name, content in (("tiny.lmdb", data[:100]), ("text.lmdb", b"hello " * 2000), ("empty.lmdb", b"")):
        (tmp_path / name).write_bytes(content)
        with pytest.raises(MalformedError, match=f"{name}: not an LMDB file"):
            LmdbImageDataset(tmp_path / name)
    with pytest.raises(UserError, match="does not exist"):
        LmdbImageDataset(tmp_path / "absent.lmdb")


# ----------------------------------------------------------------------------------------------------
# Kaggle validation sorting
# ----------------------------------------------------------------------------------------------------

WNIDS = ["n01440764", "n01443537", "n01484850"]


def make_kaggle_val(tmp_path, n=7):
    val = tmp_path / "ILSVRC" / "Data" / "CLS-LOC" / "val"
    val.mkdir(parents=True)
    rows = ["ImageId,PredictionString"]
    truth = {}
    for i in range(1, n + 1):
        stem = f"ILSVRC2012_val_{i:08d}"
        wnid = WNIDS[(i * 2) % 3]
        (val / f"{stem}.JPEG").write_bytes(jpeg_bytes((i, 0, 0)))
        rows.append(f"{stem},{wnid} 1 2 30 40 {wnid} 5 6 7 8 ")
        truth[f"{stem}.JPEG"] = wnid
    csv_path = tmp_path / "LOC_val_solution.csv"
    csv_path.write_text("\n".join(rows[:1] + rows[:0:-1]) + "\n")  # rows in any order
    return val, csv_path, truth


def sorted_listing(out):
    return {p.name: p.parent.name for p in out.rglob("*.JPEG")}


def test_sort_kaggle_val_copies_by_default(tmp_path):
    val, csv_path, truth = make_kaggle_val(tmp_path)
    before = snapshot(val)
    done = imagenet.sort_kaggle_val(val, csv_path, tmp_path / "val_sorted")
    assert snapshot(val) == before  # originals untouched
    assert sorted_listing(tmp_path / "val_sorted") == truth
    assert (done.images, done.classes, sum(done.placed.values())) == (7, 3, 7)
    assert set(done.placed) <= {"hard-link", "copy"}
    f = next(iter(truth))
    assert (tmp_path / "val_sorted" / truth[f] / f).read_bytes() == (val / f).read_bytes()
    samples, classes = imagenet.imagefolder_samples(tmp_path / "val_sorted")
    assert classes == WNIDS and len(samples) == 7
    with pytest.raises(UserError, match="val_sorted already exists and is not empty"):
        imagenet.sort_kaggle_val(val, csv_path, tmp_path / "val_sorted")
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]


def test_sort_kaggle_val_copies_when_links_fail(tmp_path, monkeypatch):
    val, csv_path, truth = make_kaggle_val(tmp_path)

    def no_link(src, dst):
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(imagenet.os, "link", no_link)
    done = imagenet.sort_kaggle_val(val, csv_path, tmp_path / "out")
    assert done.placed == {"copy": 7} and sorted_listing(tmp_path / "out") == truth
    assert len(list(val.iterdir())) == 7


def test_sort_kaggle_val_move(tmp_path):
    val, csv_path, truth = make_kaggle_val(tmp_path)
    (tmp_path / "out").mkdir()  # an empty output folder is fine
    done = imagenet.sort_kaggle_val(val, csv_path, tmp_path / "out", move=True)
    assert done.placed == {"move": 7}
    assert list(val.iterdir()) == []
    assert sorted_listing(tmp_path / "out") == truth


def test_sort_kaggle_val_errors(tmp_path):
    val, csv_path, _ = make_kaggle_val(tmp_path)
    (val / "ILSVRC2012_val_00000003.JPEG").unlink()
    with pytest.raises(UserError, match="1 image.* listed in .* are missing: ILSVRC2012_val_00000003"):
        imagenet.sort_kaggle_val(val, csv_path, tmp_path / "out", move=True)
    assert not (tmp_path / "out").exists() and len(list(val.iterdir())) == 6
    (val / "ILSVRC2012_val_00000003.JPEG").write_bytes(b"x")
    (val / "extra.JPEG").write_bytes(b"x")
    with pytest.raises(UserError, match="not listed in .*: extra.JPEG"):
        imagenet.sort_kaggle_val(val, csv_path, tmp_path / "out")
    bad = tmp_path / "bad.csv"
    bad.write_text("image,label\nfoo,n01440764\n")
    with pytest.raises(MalformedError, match="expected the header line 'ImageId,PredictionString'"):
        imagenet.sort_kaggle_val(val, bad, tmp_path / "out")
    bad.write_text("ImageId,PredictionString\nfoo,../../etc 1 2 3 4\n")
    with pytest.raises(MalformedError, match="bad.csv:2: PredictionString must start with a wnid"):
        imagenet.sort_kaggle_val(val, bad, tmp_path / "out")


# ----------------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------------


def test_cli_folder2lmdb_and_info(tmp_path, capsys):
    make_image_folder(tmp_path / "train")
    out = tmp_path / "train.lmdb"
    assert data_main(["folder2lmdb", "--root", str(tmp_path / "train"), "--out", str(out)]) == 0
    assert "12 records, 3 classes" in capsys.readouterr().out
    assert data_main(["lmdb-info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "12 records" in text and "[b'0', b'1', b'2', b'3', b'4']" in text
    assert "labels: 0..2, 3 distinct" in text
    rc = data_main(["folder2lmdb", "--root", str(tmp_path / "train"), "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and "already exists" in err and err.count("\n") == 1


def test_cli_folder2lmdb_checks_classes_against_train(tmp_path, capsys):
    make_image_folder(tmp_path / "train")
    make_image_folder(tmp_path / "val", {"a_cls": 1, "b_cls": 1})
    rc = data_main(
        [
            "folder2lmdb",
            "--root",
            str(tmp_path / "val"),
            "--out",
            str(tmp_path / "val.lmdb"),
            "--classes-from",
            str(tmp_path / "train"),
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "missing: c_cls" in err and err.count("\n") == 1
    assert not (tmp_path / "val.lmdb").exists()


def test_cli_lmdb_info_errors(tmp_path, capsys):
    write_raw_lmdb(tmp_path / "nolen.lmdb", {b"0": pickle.dumps((b"a", 0))})
    assert data_main(["lmdb-info", str(tmp_path / "nolen.lmdb")]) == 2
    err = capsys.readouterr().err
    assert "__len__" in err and err.count("\n") == 1


def test_cli_sort_val(tmp_path, capsys):
    val, csv_path, truth = make_kaggle_val(tmp_path)
    args = ["imagenet-sort-val", "--val-dir", str(val), "--solution", str(csv_path), "--out", str(tmp_path / "o")]
    assert data_main(args) == 0
    assert "7 images in 3 class folders" in capsys.readouterr().out
    assert len(list(val.iterdir())) == 7
    assert data_main(args[:-1] + [str(tmp_path / "o2"), "--move"]) == 0
    capsys.readouterr()
    assert list(val.iterdir()) == [] and sorted_listing(tmp_path / "o2") == truth
    rc = data_main(args[:-1] + [str(tmp_path / "o3")])
    err = capsys.readouterr().err
    assert rc == 2 and "are missing" in err and err.count("\n") == 1


# ----------------------------------------------------------------------------------------------------
# Damaged files, outputs that cannot be written, files that are not images
# ----------------------------------------------------------------------------------------------------


def test_corrupted_data_page_of_the_same_size(tmp_path):
    make_image_folder(tmp_path / "tree", {"a": 20, "b": 20})  # 40 records over several 4 KiB pages
    out = tmp_path / "x.lmdb"
    imagenet.folder_to_lmdb(tmp_path / "tree", out)
    data = bytearray(out.read_bytes())
    page = 2  # the first data page after the two meta pages: a branch or leaf of the main tree
    data[page * 4096 : (page + 1) * 4096] = np.random.default_rng(0).integers(0, 256, 4096, np.uint8).tobytes()
    bad = tmp_path / "bad.lmdb"
    bad.write_bytes(bytes(data))
    assert bad.stat().st_size == out.stat().st_size  # the header check cannot see it
    with pytest.raises(MalformedError, match=r"bad.lmdb: corrupt LMDB, cannot read key"):
        with LmdbImageDataset(bad) as ds:
            for i in range(len(ds)):
                ds[i]


def test_folder2lmdb_out_under_a_file(tmp_path, capsys):
    make_image_folder(tmp_path / "train", {"a": 1})
    (tmp_path / "plain").write_text("a file")
    rc = data_main(["folder2lmdb", "--root", str(tmp_path / "train"), "--out", str(tmp_path / "plain" / "t.lmdb")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1
    assert f"{tmp_path / 'plain'} is a file, not a folder" in err
    assert (tmp_path / "plain").read_text() == "a file"


def test_lmdb_write_failure_names_the_cause_and_leaves_no_temp_file(tmp_path, monkeypatch):
    make_image_folder(tmp_path / "train", {"a": 2})
    out_dir = tmp_path / "out"
    out_dir.mkdir()

    def full_disk(*args, **kwargs):
        raise lmdb.Error(f"{out_dir}/.t.lmdb.tmp1: No space left on device")

    monkeypatch.setattr(lmdb_store.lmdb, "open", full_disk)
    with pytest.raises(UserError, match=r"cannot write LMDB .*t.lmdb: no space left on the device"):
        imagenet.folder_to_lmdb(tmp_path / "train", out_dir / "t.lmdb")
    assert os.listdir(out_dir) == []


def test_files_that_are_not_images_are_warned_or_refused(tmp_path, capsys):
    make_image_folder(tmp_path / "train", {"a": 2, "b": 1})
    (tmp_path / "train" / "b" / "notes.jpg").write_text("this is text, not a JPEG")
    args = ["folder2lmdb", "--root", str(tmp_path / "train")]
    assert data_main(args + ["--out", str(tmp_path / "w.lmdb")]) == 0
    err = capsys.readouterr().err
    assert "warning: 1 file(s)" in err and "notes.jpg" in err and "--verify" in err
    with LmdbImageDataset(tmp_path / "w.lmdb") as ds:  # packed, as BiP's folder2lmdb would
        assert len(ds) == 4
    rc = data_main(args + ["--out", str(tmp_path / "v.lmdb"), "--verify"])
    err = capsys.readouterr().err
    assert rc == 2 and "notes.jpg: cannot decode image" in err and err.count("\n") == 1
    assert not (tmp_path / "v.lmdb").exists() and not list(tmp_path.glob(".v.lmdb*"))
    # real images pass --verify without a warning
    (tmp_path / "train" / "b" / "notes.jpg").unlink()
    assert data_main(args + ["--out", str(tmp_path / "ok.lmdb"), "--verify"]) == 0
    assert "warning" not in capsys.readouterr().err


@pytest.mark.parametrize(
    "head,expected",
    [
        (jpeg_bytes((1, 2, 3))[:16], True),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 8, True),
        (b"BM" + b"\0" * 14, True),
        (b"P6\n8 8\n255\n", True),
        (b"RIFF\0\0\0\0WEBPVP8 ", True),
        (b"II*\x00", True),
        (b"hello world", False),
        (b"", False),
        (b"RIFF\0\0\0\0WAVEfmt ", False),
    ],
)
def test_image_signatures(head, expected):
    assert imagenet.looks_like_image(head) is expected


def test_sort_val_out_under_a_file(tmp_path, capsys):
    val, csv_path, _ = make_kaggle_val(tmp_path)
    (tmp_path / "plain").write_text("x")
    out = tmp_path / "plain" / "sorted"
    rc = data_main(["imagenet-sort-val", "--val-dir", str(val), "--solution", str(csv_path), "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and f"{tmp_path / 'plain'} is a file, not a folder" in err and err.count("\n") == 1
    assert len(list(val.iterdir())) == 7
