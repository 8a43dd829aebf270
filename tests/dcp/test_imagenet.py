"""The ILSVRC-12 path on a tiny generated JPEG folder: PocketFlow's input pipeline (TF-official
preprocessing, mean subtraction only, labels + 1 for the 1001-way head) and both learners through
`resnet_at_ilsvrc12_run` (ResNet-18 at 32 px with tiny iteration counts: the full recipe is 224 px)."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest

pytestmark = [pytest.mark.tf, pytest.mark.slow]

tf = pytest.importorskip("tensorflow")

from dcp_tf import checkpoints, data, train  # noqa: E402
from dcp_tf import resnet_at_ilsvrc12_run as entry  # noqa: E402
from shared import archs  # noqa: E402
from shared.tf_imagenet import TF_OFFICIAL_MEAN  # noqa: E402
from tests.jpeg_folder import CLASS_STEP, write_jpeg_folder  # noqa: E402

CLASSES = 4


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_jpeg_folder(tmp_path_factory.mktemp("ilsvrc") / "data", classes=CLASSES, per_class=6, size=40)


def run(*flags) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = entry.main(list(flags))
    return code, out.getvalue(), err.getvalue()


def test_pipeline_shifts_labels_and_subtracts_the_mean_only(folder):
    train_split, val_split = data.imagenet_splits(str(folder), image_size=32)
    assert (len(train_split), len(val_split)) == (CLASSES * 6, CLASSES * 2)
    x, y = next(iter(data.eval_batches(val_split, 8)))
    classes = np.repeat(np.arange(CLASSES), 2)  # val in ImageFolder order: 2 images per class
    np.testing.assert_array_equal(y.numpy(), classes + 1)  # index 0 is PocketFlow's background class
    assert x.shape == (8, 32, 32, 3)
    # the red channel of class c is 40 c + noise in [0, 8): minus the mean, not divided by any std
    red = x.numpy()[..., 0].mean(axis=(1, 2))
    np.testing.assert_allclose(red, CLASS_STEP * classes + 3.5 - TF_OFFICIAL_MEAN[0], atol=2.0)
    stream = data.Stream(train_split, 8, seed=0)
    xb, yb = stream.next()
    assert xb.shape == (8, 32, 32, 3) and set(yb.numpy()) <= set(range(1, CLASSES + 1))
    assert stream.position == 8


def test_both_learners_train_on_the_folder_and_name_top1_and_top5(folder, tmp_path):
    common = ["--data_dir", str(folder), "--image_size", "32", "--resnet_size", "18", "--batch_size", "8",
              "--batch_size_eval", "8", "--summ_step", "0", "--bn_decay", "0.9", "--save_path",
              str(tmp_path / "models/model.ckpt"), "--save_path_eval", str(tmp_path / "models_eval/model.ckpt")]  # fmt: skip
    code, out, err = run(*common, "--learner", "full-prec", "--nb_iters_train", "2")
    assert code == 0, err[-3000:]
    base = json.loads(out.strip().splitlines()[-1])
    assert base["steps"] == 2
    dcp = ["--learner", "dis-chn-pruned", "--dcp_prune_ratio", "0.5", "--dcp_nb_stages", "1",
           "--dcp_nb_iters_block", "1", "--dcp_nb_iters_layer", "0", "--nb_epochs_rat", "0.0001",
           "--dcp_save_every_picks", "0", "--no_export", "--dcp_save_path", str(tmp_path / "dcp/model.ckpt"),
           "--dcp_save_path_eval", str(tmp_path / "dcp_eval/model.ckpt")]  # fmt: skip
    code, out, err = run(*common, *dcp)
    assert code == 0, err[-3000:]
    res = json.loads(out.strip().splitlines()[-1])
    model, _ = checkpoints.load_model(tmp_path / "dcp_eval")
    assert model.num_classes == 1001 and model.dataset == "ilsvrc12"
    for c in model.convs[1:]:  # PocketFlow prunes every conv but the first
        assert res["kept"][c.label] == [archs.dcp_kept(c.c_in, 0.5), c.c_in]
    assert train.exact_zero_check(model) == 0
    code, out, err = run(*common, *dcp, "--exec_mode", "eval")
    assert code == 0, err[-3000:]
    ev = json.loads(out.strip().splitlines()[-1])
    assert ev["n"] == CLASSES * 2 and 0.0 <= ev["top1"] <= ev["top5"] <= 1.0
    # with 4 classes in a 1001-way head, top-5 over the 4 live labels is not trivially 1 at init
    assert ev["top1"] == pytest.approx(res["top1"])


def test_missing_folder_says_what_is_expected(tmp_path):
    code, _, err = run("--data_dir", str(tmp_path / "nowhere"), "--learner", "full-prec", "--image_size", "32")
    assert code != 0 and "nowhere" in err and "train" in err
