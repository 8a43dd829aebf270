"""The two models: shapes, the original's parameter counts through the TF adapter, compressed counts."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.tf

tf = pytest.importorskip("tensorflow")

from ista_tf import flops, prune  # noqa: E402
from ista_tf.models import CNN4, ResNet20, build_model, full_arch  # noqa: E402
from shared import archs  # noqa: E402
from shared import flops as shared_flops  # noqa: E402


def _conv_bn(specs):
    return [s for s in specs if isinstance(s, (shared_flops.Conv, shared_flops.BatchNorm))]


@pytest.mark.parametrize(
    "arch, params",
    [
        (full_arch("resnet20"), 281_304),
        (full_arch("cnn4"), 1_986_760),
        ({"model": "cnn4", "widths": [32, 64, 64, 128]}, 224_008),  # the paper's reference ConvNet
    ],
)
def test_total_params_under_the_original_convention(arch, params):
    assert flops.total_params(build_model(arch)) == params


def test_adapter_specs_equal_the_shared_builders_full_and_compressed():
    widths = [16, 9, 3, 32, 20, 1, 64, 40, 7]
    assert flops.layer_specs(ResNet20()) == _conv_bn(archs.ista_resnet20())
    assert flops.layer_specs(ResNet20(widths)) == _conv_bn(archs.ista_resnet20(widths))
    assert flops.layer_specs(CNN4()) == _conv_bn(archs.ista_cnn4())
    assert flops.layer_specs(CNN4((40, 80, 96, 200))) == _conv_bn(archs.ista_cnn4((40, 80, 96, 200)))
    counts = flops.count(ResNet20(widths))
    expected = shared_flops.count(archs.ista_resnet20(widths), "ista-slim")
    assert (counts.params, counts.macs) == (expected.params, expected.macs)


def test_forward_shapes_and_variables():
    x = tf.zeros([2, 32, 32, 3])
    assert ResNet20()(x, training=False).shape == (2, 10)
    assert CNN4((8, 8, 8, 8))(x, training=True).shape == (2, 10)
    model = ResNet20()
    # the variant: beta-only BNs on stem/c1/projections, gamma+beta on c0 and on the logits
    assert model.first_bn.gamma is None and model.blocks[0].c1_bn.gamma is None
    assert model.blocks[3].proj.kernel.shape == (2, 2, 16, 32) and model.blocks[0].proj is None
    assert model.logits_bn.gamma is not None and len(model.units()) == 9
    assert len(model.weight_decay_kernels()) == 1 + 9 * 2 + 2 + 1 and CNN4().weight_decay_kernels() == []


def test_compressed_model_is_physically_smaller_and_counted_from_its_shapes():
    model = ResNet20(seed=1)
    zero = {"g0b1c0": [0, 3, 5], "g1b2c0": list(range(20)), "g2b0c0": [1, 2]}
    for unit in model.units():
        if unit.label in zero:
            g = unit.bn.gamma.numpy()
            g[zero[unit.label]] = 0.0
            unit.bn.gamma.assign(g)
    raw = {u.label: u.bn.gamma.numpy() for u in model.units()}
    compact, result = prune.compress(model, raw)
    assert result.widths_after == [16, 13, 16, 32, 32, 12, 62, 64, 64]
    assert compact.blocks[1].c0.kernel.shape == (3, 3, 16, 13) and compact.blocks[1].c1.kernel.shape == (
        3,
        3,
        13,
        16,
    )
    assert compact.blocks[1].c0_bn.moving_mean.shape == (13,)
    params = flops.total_params(compact)
    assert params == shared_flops.count(archs.ista_resnet20(result.widths_after), "ista-slim").params
    # a pruned c0 channel saves 9 C_in + 4 BN entries + 9 C_out: 292 (g0), 580 (g1b1/2), 868 (g2b0)
    assert 281_304 - params == 3 * 292 + 20 * 580 + 2 * 868
    assert sum(int(np.prod(v.shape)) for v in compact.variables) < sum(int(np.prod(v.shape)) for v in model.variables)


def test_mixed_bfloat16_computes_in_bf16_with_float32_variables():
    full = ResNet20(seed=2)
    mixed = ResNet20(seed=2, compute_dtype=tf.bfloat16)
    x = tf.random.stateless_normal([4, 32, 32, 3], seed=(5, 5))
    a, b = full(x, training=True).numpy(), mixed(x, training=True).numpy()
    assert all(v.dtype == tf.float32 for v in mixed.variables) and b.dtype == np.float32
    assert 0 < np.abs(a - b).max() < 0.1 * np.abs(a).max()
