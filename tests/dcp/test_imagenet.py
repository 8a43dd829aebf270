"""The ILSVRC-12 path on a tiny generated JPEG folder: PocketFlow's input pipeline (TF-official
preprocessing, mean subtraction only, labels + 1 for the 1001-way head) and the full-prec learner through
`resnet_at_ilsvrc12_run` (ResNet-18 at 32 px, two steps: the full recipe is 224 px)."""

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
from shared.data.arrays import ArraySplit  # noqa: E402
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


def test_full_prec_trains_on_the_folder_and_names_top1_and_top5(folder, tmp_path):
    """PocketFlow's ResNet-18 (1001 outputs, max-pool stem) through the entry point; dis-chn-pruned on the
    same folder runs in `SMOKE=1 bash scripts/dcp/imagenet_table5.sh` (every pick of ResNet-18's 20 convs
    and a 400 MB learner checkpoint per layer: 130 s CPU, too long for the suite)."""
    common = ["--data_dir", str(folder), "--image_size", "32", "--resnet_size", "18", "--batch_size", "8",
              "--batch_size_eval", "8", "--summ_step", "0", "--bn_decay", "0.9",
              "--save_path", str(tmp_path / "models/model.ckpt"),
              "--save_path_eval", str(tmp_path / "models_eval/model.ckpt")]  # fmt: skip
    code, out, err = run(*common, "--learner", "full-prec", "--nb_iters_train", "2")
    assert code == 0, err[-3000:]
    base = json.loads(out.strip().splitlines()[-1])
    assert base["steps"] == 2
    model, _ = checkpoints.load_model(tmp_path / "models")
    assert model.num_classes == 1001 and model.dataset == "ilsvrc12"
    code, out, err = run(*common, "--learner", "full-prec", "--exec_mode", "eval")
    assert code == 0, err[-3000:]
    ev = json.loads(out.strip().splitlines()[-1])
    assert ev["n"] == CLASSES * 2 and 0.0 <= ev["top1"] <= ev["top5"] <= 1.0
    # the 8 val images scored by hand from the saved model: top-5 over the 1001 outputs, labels + 1
    _, val = data.imagenet_splits(str(folder), image_size=32)
    x, y = next(iter(data.eval_batches(val, 8)))
    logits = model(x, training=False).numpy()
    top5 = np.argsort(-logits, axis=1)[:, :5]
    assert ev["top5"] == pytest.approx(np.mean([label in row for label, row in zip(y.numpy(), top5)]))
    assert ev["top1"] == pytest.approx(np.mean(logits.argmax(1) == y.numpy()))


def test_missing_folder_says_what_is_expected(tmp_path):
    code, _, err = run("--data_dir", str(tmp_path / "nowhere"), "--learner", "full-prec", "--image_size", "32")
    assert code != 0 and "nowhere" in err and "train" in err


def test_evaluate_counts_top5_by_rank():
    """A stand-in network that ranks class c at place c for every image: an image of class y is a top-1
    hit only for y = 0 and a top-5 hit for y < 5 (a top-5 computed as top-1, or over 4 classes, fails)."""

    class Ranked:
        num_classes = 12

        def __call__(self, x, training=False):
            return tf.tile(-tf.range(12, dtype=tf.float32)[None], [tf.shape(x)[0], 1])

    labels = np.array([0, 1, 4, 5, 7, 11, 3, 0, 6, 2], np.int64)
    split = ArraySplit("toy", "test", np.zeros((10, 32, 32, 3), np.uint8), labels, tuple("abcdefghijkl"))
    ev = train.evaluate(Ranked(), split, batch_size=4)
    assert ev["top1"] == pytest.approx(np.mean(labels == 0)) and ev["top5"] == pytest.approx(np.mean(labels < 5))
