"""The TF networks against the framework-free layer lists, DCP's stage split of each variant, and the
stage-count errors."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.tf

tf = pytest.importorskip("tensorflow")

from dcp_tf import dcp  # noqa: E402
from dcp_tf import flops as dflops  # noqa: E402
from dcp_tf.models import ResNet  # noqa: E402
from shared import archs, flops  # noqa: E402
from shared.errors import UserError  # noqa: E402


def mask_half(model: ResNet, only_prunable: bool) -> None:
    rng = np.random.default_rng(0)
    for c in model.convs[1:]:
        if only_prunable and c.role != "prunable":
            continue
        keep = archs.dcp_kept(c.c_in, 0.5)
        m = np.zeros(c.c_in, np.float32)
        m[rng.permutation(c.c_in)[:keep]] = 1
        c.mask.assign(m)


@pytest.mark.parametrize("convention", ["conv-fc", "conv-only"])
def test_pocketflow_resnet20_counts_equal_the_layer_list(convention):
    model = ResNet("pocketflow", "cifar10", 20)
    assert len(model.convs) == 22
    assert dflops.count(model, convention) == flops.count(archs.pocketflow_resnet(20), convention)
    mask_half(model, only_prunable=False)
    got = dflops.count(model, convention)
    want = flops.count(archs.pocketflow_resnet(20, "cifar10", 0.5, slim=True), convention)
    assert (got.macs, got.params) == (want.macs, want.params)


def test_preresnet56_counts_and_trainable_parameters():
    model = ResNet("paper", "cifar10", 56)
    assert sum(int(np.prod(v.shape)) for v in model.trainable_variables) == 855_578
    mask_half(model, only_prunable=True)
    got = dflops.count(model)
    want = flops.count(archs.dcp_preresnet(56, 0.5))
    assert (got.macs, got.params) == (want.macs, want.params) == (63_226_496, 430_634)


def test_pocketflow_resnet18_imagenet_has_21_convs_and_1001_logits():
    model = ResNet("pocketflow", "ilsvrc12", 18)
    assert len(model.convs) == 21
    assert dflops.count(model, "conv-only").macs == 1_826_406_400


def test_pocketflow_stage_split_of_resnet20():
    """ceil(23/4) = 6 convs per block: aux heads after convs 5, 11, 17 (research notes 2.3)."""
    stages = dcp.pocketflow_stages(ResNet("pocketflow", "cifar10", 20), 3)
    assert [s.tap for s in stages] == [("conv", 5), ("conv", 11), ("conv", 17), None]
    assert stages[0].layers == [1, 2, 3, 4, 5]  # the stem (conv 0) is never pruned
    assert [i for s in stages for i in s.layers] == list(range(1, 22))


def test_paper_pivots_of_preresnet56_resnet18_resnet50():
    assert dcp.paper_pivots(27, 3) == [7, 14, 21]
    assert dcp.paper_pivots(8, 2) == [3, 6]
    assert dcp.paper_pivots(16, 3) == [5, 10, 15]
    stages = dcp.paper_stages(ResNet("paper", "cifar10", 56), 3)
    assert [s.tap for s in stages] == [("block", 6), ("block", 13), ("block", 20), None]
    model = ResNet("paper", "cifar10", 56)
    pruned = [model.convs[i].label for s in stages for i in s.layers]
    assert len(pruned) == 27 and all(name.endswith("conv2") for name in pruned)


def test_too_many_stages_is_a_user_error_naming_the_allowed_values():
    with pytest.raises(UserError, match="allowed values"):
        dcp.pocketflow_stages(ResNet("pocketflow", "cifar10", 20), 10)
    with pytest.raises(UserError, match=r"allowed values: \[1, 2, 3, 4, 5, 6, 13\]"):
        dcp.paper_pivots(27, 9)  # 27 // 10 + 1 = 3: pivots 3 .. 27, the last is the network's end
    with pytest.raises(UserError):
        dcp.pocketflow_stages(ResNet("pocketflow", "cifar10", 20), 0)


def test_stem_stride_two_padding_is_tf_officials_fixed_padding():
    """A 3x3 stride-2 conv pads 1 before and 1 after (not SAME's 0/1): compare with an explicit pad."""
    from dcp_tf.models.layers import conv

    x = tf.random.stateless_normal([1, 8, 8, 2], seed=(1, 2))
    k = tf.random.stateless_normal([3, 3, 2, 4], seed=(3, 4))
    want = tf.nn.conv2d(tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]]), k, 2, "VALID")
    np.testing.assert_allclose(conv(x, k, 2).numpy(), want.numpy(), rtol=1e-5, atol=1e-5)
    assert not np.allclose(tf.nn.conv2d(x, k, 2, "SAME").numpy(), want.numpy())
