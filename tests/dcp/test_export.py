"""The slimmed export (ours) and PocketFlow's 1x1-gather export compute the masked model; ours is
physically smaller; SavedModel and TFLite files give the same outputs."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.tf

tf = pytest.importorskip("tensorflow")

from dcp_tf import export  # noqa: E402
from dcp_tf import flops as dflops  # noqa: E402
from dcp_tf.models import ResNet  # noqa: E402
from shared import archs  # noqa: E402


def pruned_model(family: str) -> ResNet:
    """A ResNet-8 with random BN statistics and half of the DCP-prunable input channels masked."""
    model = ResNet(family, "cifar10", 8, seed=3)
    rng = np.random.default_rng(0)
    for bn in model.batch_norms():
        n = bn.channels
        bn.moving_mean.assign(rng.normal(0, 0.3, n).astype(np.float32))
        bn.moving_variance.assign(rng.uniform(0.5, 2.0, n).astype(np.float32))
        bn.gamma.assign(rng.uniform(0.5, 1.5, n).astype(np.float32))
        bn.beta.assign(rng.normal(0, 0.3, n).astype(np.float32))
    for c in model.convs[1:]:
        if family == "paper" and c.role != "prunable":
            continue
        m = np.zeros(c.c_in, np.float32)
        m[rng.permutation(c.c_in)[: archs.dcp_kept(c.c_in, 0.5)]] = 1
        c.mask.assign(m)
        c.kernel.assign(c.kernel * c.mask4())
    return model


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(5).normal(size=(4, 32, 32, 3)).astype(np.float32)


@pytest.mark.parametrize("family", ["pocketflow", "paper"])
def test_both_exports_equal_the_masked_model_and_ours_is_smaller(family, images):
    model = pruned_model(family)
    ref = model(images, training=False).numpy()
    slim, pf = export.build(model, "slim"), export.build(model, "pocketflow")
    np.testing.assert_allclose(slim(images).numpy(), ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(pf(images).numpy(), ref, rtol=1e-4, atol=1e-4)
    dense = export.weight_count(export.build(model, "dense"))
    assert export.weight_count(slim) < export.weight_count(pf) < dense
    if family == "paper":  # exact slimming: no gather left, conv1 computes only the kept channels
        assert all(c.select is None for blk in slim.blocks for c in blk["convs"])
        c1 = slim.blocks[0]["convs"][0]
        assert c1.kernel.shape[3] == dflops.kept_channels(model.blocks[0].main[1])


def test_unpruned_channels_matter(images):
    """Guard against a trivially equal export: changing a kept weight changes the output."""
    model = pruned_model("paper")
    ref = export.build(model, "slim")(images).numpy()
    c = model.blocks[0].main[1]
    j = int(np.flatnonzero(c.mask.numpy())[0])
    c.kernel.assign(c.kernel + tf.reshape(tf.one_hot(j, c.c_in), [1, 1, -1, 1]))
    assert np.abs(export.build(model, "slim")(images).numpy() - ref).max() > 1e-3


def test_savedmodel_and_tflite_files_equal_the_masked_model(tmp_path, images):
    model = pruned_model("pocketflow")
    ref = model(images, training=False).numpy()
    paths = export.export_all(model, tmp_path)
    loaded = tf.saved_model.load(str(paths["saved_model"]))
    out = loaded.signatures["serving_default"](tf.constant(images))
    np.testing.assert_allclose(next(iter(out.values())).numpy(), ref, rtol=1e-4, atol=1e-4)
    lite = export.run_tflite(paths["tflite"].read_bytes(), images)
    np.testing.assert_allclose(lite, ref, rtol=1e-4, atol=1e-4)
