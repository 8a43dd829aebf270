"""Cross-checks against TensorFlow's own tools: the FLOPs and parameter counts of `ista_tf.flops` (through
`shared.flops`) against TF's profiler, for the full and a compressed model of both ISTA networks; the
moving average of `shared.tf_train` against `tf.train.ExponentialMovingAverage`.

Conventions, stated so that every comparison is exact:
- TF's profiler (`float_operation`) counts 2 FLOPs per multiply-accumulate of a Conv2D
  (2 * kh * kw * c_in * c_out * H_out * W_out), 1 per output element of an elementwise AddV2, and
  kh * kw per output element of AvgPool / MaxPool; it registers no count for FusedBatchNormV3 or Relu.
  `shared.flops` counts MACs of convs and FC only. So: profiler Conv2D FLOPs = 2 * our MACs, and the
  profiler's other FLOPs are the residual additions and the pooling, counted here by hand.
- TF's parameter profile over trainable variables = the `conv-fc` count (kernels, BN gamma and beta;
  the convs have no bias); over every variable = the `ista-slim` count, which adds each BN's moving
  mean and moving variance (2 x channels per BN).
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

pytestmark = pytest.mark.tf

tf = pytest.importorskip("tensorflow")

from ista_tf import flops  # noqa: E402
from ista_tf.models import build_model  # noqa: E402
from ista_tf.models.layers import BatchNorm  # noqa: E402
from shared import tf_train  # noqa: E402

Builder = tf.compat.v1.profiler.ProfileOptionBuilder

RESNET20_FULL = [16] * 3 + [32] * 3 + [64] * 3
RESNET20_PRUNED = [3, 5, 16, 7, 32, 1, 9, 64, 2]  # any c0 widths: only the inner widths change
CNN4_FULL = [96, 192, 192, 384]
CNN4_PRUNED = [13, 40, 7, 100]


def other_flops_by_hand(model_name: str, widths: list[int]) -> dict[str, int]:
    """The profiler's non-conv FLOPs for one 32x32 image, from the architecture (module docstrings)."""
    if model_name == "resnet20":
        # residual addition: one add per element of each block's output (3 blocks per group, widths
        # 16/32/64 on 32/16/8 maps, whatever the pruned c0 widths); head: 8x8 average pool of 64 maps
        adds = 3 * (16 * 32 * 32 + 32 * 16 * 16 + 64 * 8 * 8)
        return {"AddV2": adds, "AvgPool": 8 * 8 * 64}
    # cnn4: 3x3 max pools after conv1 (-> 16x16), conv2 (-> 8x8), conv3 (-> 4x4)
    w1, w2, w3, _ = widths
    return {"MaxPool": 9 * (w1 * 16 * 16 + w2 * 8 * 8 + w3 * 4 * 4)}


def bn_channels_by_hand(model_name: str, widths: list[int]) -> int:
    if model_name == "resnet20":
        # stem BN 16; per block c0 BN (width) + c1 BN (16/32/64); two projection BNs (32, 64); logits BN 10
        return 16 + sum(widths) + 3 * (16 + 32 + 64) + 32 + 64 + 10
    return sum(widths) + 10


@functools.cache
def profiled(model_name: str, widths: tuple[int, ...]):
    """TF's profiler on a graph holding the model's variables and its inference forward (batch 1, under
    the name scope `forward/`, apart from the initialisers): ({op type: FLOPs of the forward},
    trainable parameters, all parameters), and our counts of the same model."""
    with tf.Graph().as_default() as graph:
        model = build_model({"model": model_name, "widths": list(widths)})
        with tf.name_scope("forward"):
            model(tf.compat.v1.placeholder(tf.float32, [1, 32, 32, 3]), training=False)
        ours = flops.count(model), flops.count(model, "conv-fc")
        bn_channels = sum(layer.channels for layer in model.layers() if isinstance(layer, BatchNorm))
        profile = tf.compat.v1.profiler.profile(graph, options={**Builder.float_operation(), "output": "none"})
        by_type: dict[str, int] = {}
        nodes = list(profile.children)
        while nodes:
            node = nodes.pop()
            nodes += node.children
            if node.name.startswith("forward/") and node.float_ops:
                kind = graph.get_operation_by_name(node.name).type
                by_type[kind] = by_type.get(kind, 0) + node.float_ops
        trainable = {**Builder.trainable_variables_parameter(), "output": "none"}
        every = {**trainable, "account_type_regexes": ["VarHandleOp"]}  # every variable: moving statistics too
        params = tuple(tf.compat.v1.profiler.profile(graph, options=o).total_parameters for o in (trainable, every))
    return by_type, params, ours, bn_channels


@pytest.mark.parametrize(
    "model_name, widths",
    [("resnet20", RESNET20_FULL), ("resnet20", RESNET20_PRUNED), ("cnn4", CNN4_FULL), ("cnn4", CNN4_PRUNED)],
    ids=["resnet20-full", "resnet20-compressed", "cnn4-full", "cnn4-compressed"],
)
def test_flops_and_params_equal_tensorflows_profiler(model_name, widths):
    by_type, (trainable, every), (ours, conv_fc), bn_channels = profiled(model_name, tuple(widths))
    by_type = dict(by_type)
    # 2 FLOPs per MAC of every conv (the logits 1x1 conv included); the rest is additions and pooling
    assert by_type.pop("Conv2D") == 2 * ours.macs
    assert by_type == other_flops_by_hand(model_name, widths)
    # parameters: trainable = conv-fc; every variable = ista-slim = trainable + moving mean and variance
    assert bn_channels == bn_channels_by_hand(model_name, widths)
    assert trainable == conv_fc.params
    assert every == ours.params == trainable + 2 * bn_channels_by_hand(model_name, widths)


@pytest.mark.parametrize("decay", [0.999, 0.6])
def test_moving_average_equals_tf_train_exponential_moving_average(decay):
    """Same decay and num_updates over 25 updates: decay 0.999 follows (1 + t) / (10 + t) throughout;
    decay 0.6 switches from that rule to the constant at t = 13 ((1 + t) / (10 + t) > 0.6 from t = 12.5)."""
    rng = np.random.default_rng(0)
    ours_vars = [tf.Variable(rng.normal(size=s).astype("f")) for s in ((3, 4), (5,))]
    ref_vars = [tf.Variable(v.numpy()) for v in ours_vars]
    step = tf.Variable(0, dtype=tf.int64)
    ours = tf_train.ExponentialMovingAverage(ours_vars, decay)
    reference = tf.train.ExponentialMovingAverage(decay, num_updates=step)
    reference.apply(ref_vars)  # creates the shadows at the variables' values; this update changes nothing
    np.testing.assert_array_equal(reference.average(ref_vars[0]).numpy(), ours.shadows[0].numpy())
    for t in range(1, 26):
        for mine, theirs in zip(ours_vars, ref_vars):
            new = rng.normal(size=mine.shape).astype("f")
            mine.assign(new)
            theirs.assign(new)
        step.assign(t)
        ours.update(ours_vars, step)
        reference.apply(ref_vars)
        for shadow, var in zip(ours.shadows, ref_vars):
            np.testing.assert_array_equal(shadow.numpy(), reference.average(var).numpy())  # same float32 ops
    # the averages are not the last values (the test would pass trivially with decay 0)
    assert np.abs(ours.shadows[0].numpy() - ours_vars[0].numpy()).max() > 0.1
