"""Custom layers of EKG (the original's `nets/tcl.py` in spirit), as `tf.Module`s with `tf.nn` ops.

- `Conv2d`: HWIO kernel, VarianceScaling(2, fan_out) init, no bias; optional input/output channel
  gates. A gated kernel is masked and rescaled so that its Frobenius norm over the whole 4-D tensor
  equals the unmasked kernel's (research/ekg.md 1.2).
- `DepthwiseConv2d`: [k, k, C, 1] kernel, one gate for its channels.
- `FC`: N(0, 0.01) kernel [C_in, C_out] and `biases` [1, C_out]; optional input gate, renormalised.
- `BatchNorm`: own moving statistics (momentum 0.9, eps 1e-5), every parameter shaped [1, 1, 1, C].
  A BN that belongs to a gated conv never updates its moving statistics; under several replicas the
  batch statistics are those of the global batch (one all-reduce).
- `ScoringGate`: the pseudo-supernet's channel gate (`score`, `order`, `rate`); keeps the channels of
  rank < ceil(C * rate), at least one.

Every layer reports its own FLOPs/params from its live channels (`spec`), in `shared.flops` layer
specs, so the one counter measures the dense model, a masked candidate and a slimmed network alike.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from shared import flops

BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5


def _stateless_seed(name: str, seed: int) -> tuple[int, int]:
    """A per-layer seed from the layer name, so initial weights do not depend on creation order."""
    return (int(seed), int(np.frombuffer(name.encode()[:8].ljust(8, b"\0"), "<i8")[0] % (2**31)))


def variance_scaling_fan_out(shape, seed: tuple[int, int]) -> tf.Tensor:
    """VarianceScaling(scale=2, mode='fan_out', truncated normal): std = sqrt(2 / (kh*kw*C_out))."""
    kh, kw, _, c_out = shape
    std = math.sqrt(2.0 / (kh * kw * c_out)) / 0.87962566103423978  # truncation at 2 std
    return tf.random.stateless_truncated_normal(shape, seed=seed, stddev=std)


class ScoringGate(tf.Module):
    """Channel gate of one prunable width (Eq. 3's mask). Non-trainable state:

    score [1,1,1,C]  the filter importance of the current iteration (Eq. 9), summed over D^val batches;
    order [1,1,1,C]  rank of each channel by score (0 = most important);
    rate             kept-width fraction; `kept` = max(ceil(C * rate), 1) is held beside it, computed on
                     the host with a float tolerance (C * rate = 2.0000001 keeps 2, not 3).

    `num_call` is the number of convs writing through this gate (1 for an inner conv, 1 + blocks for a
    stage's residual group), which sets its search step max(1/C, search_step / num_call)."""

    def __init__(self, name: str, channels: int):
        super().__init__(name=name.replace("/", "_").replace(".", "_"))
        self.label = name
        self.channels = int(channels)
        self.num_call = 0
        kw = {"trainable": False}
        self.score = tf.Variable(tf.zeros([1, 1, 1, channels]), name="score", **kw)
        self.order = tf.Variable(tf.reshape(tf.range(channels, dtype=tf.float32), [1, 1, 1, -1]), name="order", **kw)
        self.rate = tf.Variable(1.0, name="rate", **kw)
        self.kept = tf.Variable(float(channels), name="kept", **kw)

    @staticmethod
    def kept_for(channels: int, rate: float) -> int:
        return max(int(math.ceil(channels * rate - 1e-6)), 1)

    def set_rate(self, rate: float) -> None:
        self.rate.assign(float(rate))
        self.kept.assign(float(self.kept_for(self.channels, rate)))

    def set_order(self, order: np.ndarray) -> None:
        self.order.assign(np.reshape(order, [1, 1, 1, -1]).astype(np.float32))

    def mask(self) -> tf.Tensor:
        """[C] float mask: 1 for channels with order < kept."""
        return tf.cast(tf.reshape(self.order, [-1]) < self.kept, tf.float32)

    def live(self) -> int:
        return int(self.kept.numpy())

    def kept_indices(self) -> np.ndarray:
        return np.flatnonzero(self.order.numpy().ravel() < self.kept.numpy())

    def __call__(self, x: tf.Tensor, probe: tf.Tensor | None = None) -> tf.Tensor:
        """x * mask; with a probe p (ones [C], watched by a tape) x * mask * p, so dR/dp = the per-channel
        sum over batch, h, w of dR/dy * y at this site, the quantity Eq. (9) takes the magnitude of."""
        y = x * tf.cast(self.mask(), x.dtype)
        if probe is not None:
            y = y * tf.cast(probe, x.dtype)
        return y


def renormalised(kernel: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """kernel * mask scaled so that ||.||_F over the whole tensor equals ||kernel||_F (research 1.2)."""
    masked = kernel * mask
    full = tf.norm(tf.reshape(kernel, [-1]))
    part = tf.norm(tf.reshape(masked, [-1]))
    return masked * (full / tf.maximum(part, 1e-12))


class Layer(tf.Module):
    """Base: `label` is the original layer name (`BasicBlock1.0/conv3`); `out_hw` is recorded by the
    model's probe forward pass at its nominal input size (32, or 224 for ImageNet) and kept: the counter
    counts at that size whatever size later batches have (smoke runs at other crop sizes); the gates are
    wired by the model."""

    def __init__(self, label: str):
        super().__init__(name=label.replace("/", "_").replace(".", "_"))
        self.label = label
        self.out_hw: tuple[int, int] | None = None

    def _record(self, y: tf.Tensor) -> None:
        if self.out_hw is None and y.shape[1] is not None:
            self.out_hw = (int(y.shape[1]), int(y.shape[2]))


def _live(gate: ScoringGate | None, full: int, kept: dict | None) -> int:
    if gate is None:
        return full
    if kept is not None and gate.label in kept:
        return int(kept[gate.label])
    return gate.live()


class Conv2d(Layer):
    def __init__(self, label: str, c_in: int, c_out: int, k: int, stride: int = 1, seed: int = 0):
        super().__init__(label)
        self.stride = int(stride)
        self.kernel = tf.Variable(
            variance_scaling_fan_out((k, k, c_in, c_out), _stateless_seed(label, seed)), name="kernel"
        )
        self.in_gate: ScoringGate | None = None
        self.out_gate: ScoringGate | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.kernel.shape)

    def effective_kernel(self) -> tf.Tensor:
        if self.in_gate is None and self.out_gate is None:
            return self.kernel
        _, _, c_in, c_out = self.shape
        m_in = self.in_gate.mask() if self.in_gate is not None else tf.ones([c_in])
        m_out = self.out_gate.mask() if self.out_gate is not None else tf.ones([c_out])
        return renormalised(self.kernel, m_in[None, None, :, None] * m_out[None, None, None, :])

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        y = tf.nn.conv2d(x, tf.cast(self.effective_kernel(), x.dtype), self.stride, "SAME")
        self._record(y)
        return y

    def spec(self, kept: dict | None = None) -> flops.Conv:
        k, _, c_in, c_out = self.shape
        return flops.Conv(
            self.label, _live(self.in_gate, c_in, kept), _live(self.out_gate, c_out, kept), k, self.out_hw
        )


class DepthwiseConv2d(Layer):
    """Depthwise conv: kernel [k, k, C, 1]; its channels follow `gate` (input and output alike)."""

    def __init__(self, label: str, channels: int, k: int, stride: int = 1, seed: int = 0):
        super().__init__(label)
        self.stride = int(stride)
        init = variance_scaling_fan_out((k, k, channels, 1), _stateless_seed(label, seed))
        self.kernel = tf.Variable(init, name="kernel")
        self.gate: ScoringGate | None = None

    def effective_kernel(self) -> tf.Tensor:
        if self.gate is None:
            return self.kernel
        return renormalised(self.kernel, self.gate.mask()[None, None, :, None])

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        s = self.stride
        y = tf.nn.depthwise_conv2d(x, tf.cast(self.effective_kernel(), x.dtype), [1, s, s, 1], "SAME")
        self._record(y)
        return y

    def spec(self, kept: dict | None = None) -> flops.Conv:
        k, _, c, _ = (int(s) for s in self.kernel.shape)
        live = _live(self.gate, c, kept)
        return flops.Conv(self.label, live, live, k, self.out_hw, groups=live)


class FC(Layer):
    def __init__(self, label: str, c_in: int, c_out: int, seed: int = 0):
        super().__init__(label)
        init = tf.random.stateless_normal([c_in, c_out], seed=_stateless_seed(label, seed), stddev=0.01)
        self.kernel = tf.Variable(init, name="kernel")
        self.biases = tf.Variable(tf.zeros([1, c_out]), name="biases")
        self.in_gate: ScoringGate | None = None

    def effective_kernel(self) -> tf.Tensor:
        if self.in_gate is None:
            return self.kernel
        return renormalised(self.kernel, self.in_gate.mask()[:, None])

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        return tf.matmul(x, tf.cast(self.effective_kernel(), x.dtype)) + tf.cast(self.biases, x.dtype)

    def spec(self, kept: dict | None = None) -> flops.Linear:
        c_in, c_out = (int(s) for s in self.kernel.shape)
        return flops.Linear(self.label, _live(self.in_gate, c_in, kept), c_out)


class BatchNorm(Layer):
    """y = gamma (x - mean) / sqrt(var + eps) + beta with batch statistics (training) or the moving
    ones; moving <- 0.9 moving + 0.1 batch (biased batch variance) when training, ungated, and
    `update` is on. The moving statistics are ON_READ/MEAN variables, as tf.distribute needs."""

    def __init__(self, label: str, channels: int, gamma_init: float = 1.0):
        super().__init__(label)
        shape = [1, 1, 1, channels]
        self.gamma = tf.Variable(tf.fill(shape, float(gamma_init)), name="gamma")
        self.beta = tf.Variable(tf.zeros(shape), name="beta")
        stat = {
            "trainable": False,
            "synchronization": tf.VariableSynchronization.ON_READ,
            "aggregation": tf.VariableAggregation.MEAN,
        }
        self.moving_mean = tf.Variable(tf.zeros(shape), name="moving_mean", **stat)
        self.moving_variance = tf.Variable(tf.ones(shape), name="moving_variance", **stat)
        self.gate: ScoringGate | None = None

    @property
    def channels(self) -> int:
        return int(self.gamma.shape[-1])

    def _batch_moments(self, x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        ctx = tf.distribute.get_replica_context()
        if ctx is not None and ctx.num_replicas_in_sync > 1:  # statistics of the global batch
            count = tf.cast(tf.reduce_prod(tf.shape(x)[:-1]), tf.float32)
            s, sq = tf.reduce_sum(x, [0, 1, 2], keepdims=True), tf.reduce_sum(tf.square(x), [0, 1, 2], keepdims=True)
            s, sq, count = ctx.all_reduce(tf.distribute.ReduceOp.SUM, [s, sq, count])
            mean = s / count
            return mean, tf.maximum(sq / count - tf.square(mean), 0.0)
        return tf.nn.moments(x, [0, 1, 2], keepdims=True)

    def __call__(self, x: tf.Tensor, training: bool, update: bool = True) -> tf.Tensor:
        dtype = x.dtype
        x = tf.cast(x, tf.float32)
        if training:
            mean, var = self._batch_moments(x)
            if update and self.gate is None:
                self.moving_mean.assign(BN_MOMENTUM * self.moving_mean + (1.0 - BN_MOMENTUM) * mean)
                self.moving_variance.assign(BN_MOMENTUM * self.moving_variance + (1.0 - BN_MOMENTUM) * var)
        else:
            mean, var = self.moving_mean, self.moving_variance
        y = (x - mean) * tf.math.rsqrt(var + BN_EPSILON) * self.gamma + self.beta
        self._record(y)
        return tf.cast(y, dtype)

    def spec(self, kept: dict | None = None) -> flops.BatchNorm:
        return flops.BatchNorm(self.label, _live(self.gate, self.channels, kept), self.out_hw)
