"""Hand-written conv and batch-norm modules with the TF1 slim defaults the original code ran with.

TF 2.21 has no `tf.contrib.slim` and slim's `batch_norm` no longer runs (research/ista.md 7), so the
batch norm is written out: its own gamma/beta/moving statistics, decay 0.999, epsilon 1e-3, gamma and
beta each optional (`scale`/`center`, as slim allows: the original resnet20 has beta-only BNs). Its
arithmetic runs through TensorFlow's fused batch-norm kernel, as slim's `fused` batch norm did (oneDNN on
a CPU: 19% faster training steps than the same formula in separate ops, `ista_tf/README.md`), except
under several replicas, where the batch statistics are all-reduced explicitly.

Every module keeps `label`, the original program's scope name (`g1b0c0`, `g1b0c0/BatchNorm`, ...), and
`role`, the layer's role in `shared.archs` (stem, prunable, block, shortcut, head); `ista_tf.flops`
uses both to produce the same layer specs as `shared.archs`.
"""

from __future__ import annotations

import math

import tensorflow as tf

BN_DECAY = 0.999  # slim batch_norm default decay (Keras' default momentum is 0.99)
BN_EPSILON = 1e-3  # slim batch_norm default epsilon


def glorot_uniform(shape: tuple[int, ...], seed: tuple[int, int]) -> tf.Tensor:
    """Xavier/Glorot uniform init of a conv kernel [kh, kw, c_in, c_out] (contrib xavier_initializer),
    drawn from a stateless generator so that a seed gives the same weights in any creation order."""
    kh, kw, c_in, c_out = shape
    limit = math.sqrt(6.0 / (kh * kw * c_in + kh * kw * c_out))
    return tf.random.stateless_uniform(shape, seed=seed, minval=-limit, maxval=limit)


class Conv2D(tf.Module):
    """A bias-free 2-D convolution (the original convs have no bias; BN follows each of them)."""

    def __init__(
        self,
        label: str,
        c_in: int,
        c_out: int,
        kernel: int,
        *,
        stride: int = 1,
        padding: str = "SAME",
        role: str,
        seed: tuple[int, int],
    ):
        super().__init__(name=label.replace("/", "_"))
        self.label, self.role = label, role
        self.stride, self.padding = stride, padding
        self.kernel = tf.Variable(glorot_uniform((kernel, kernel, c_in, c_out), seed), name="weights")
        self.output_hw: int | None = None  # set by each call (static shape), read by ista_tf.flops

    @property
    def c_in(self) -> int:
        return int(self.kernel.shape[2])

    @property
    def c_out(self) -> int:
        return int(self.kernel.shape[3])

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        y = tf.nn.conv2d(x, tf.cast(self.kernel, x.dtype), self.stride, self.padding)
        self.output_hw = int(y.shape[1])
        return y


class BatchNorm(tf.Module):
    """Batch norm over N, H, W with optional gamma (`scale`) and beta (`center`), like slim's.

    Training: normalise with the batch statistics and move the moving averages towards them,
    m <- m - (1 - decay) (m - batch_stat), decay 0.999 unless the trainer sets another; the variance
    moved towards is the unbiased one, as slim's fused kernel returns it. Inference: normalise with the
    moving averages.

    Under several replicas the batch statistics are summed over replicas (one all-reduce of sum,
    sum of squares and count), so a step on R replicas computes what one device computes on the global
    batch. The moving statistics are ON_READ variables: each replica updates its copy with the same
    (global) values, and a read outside the step gives their mean.
    """

    def __init__(self, label: str, channels: int, *, scale: bool, center: bool, role: str):
        super().__init__(name=label.replace("/", "_"))
        self.label, self.role = label, role
        self.decay = BN_DECAY  # a training setting (set before the step is traced), not part of the checkpoint
        self.gamma = tf.Variable(tf.ones([channels]), name="gamma") if scale else None
        self.beta = tf.Variable(tf.zeros([channels]), name="beta") if center else None
        stat = {
            "trainable": False,
            "synchronization": tf.VariableSynchronization.ON_READ,
            "aggregation": tf.VariableAggregation.MEAN,
        }
        self.moving_mean = tf.Variable(tf.zeros([channels]), name="moving_mean", **stat)
        self.moving_variance = tf.Variable(tf.ones([channels]), name="moving_variance", **stat)
        self.output_hw: int | None = None

    @property
    def channels(self) -> int:
        return int(self.moving_mean.shape[0])

    def _scale_offset(self) -> tuple[tf.Tensor, tf.Tensor]:
        """gamma and beta, or the constants 1 and 0 where the layer has none (the fused kernel needs both)."""
        scale = self.gamma if self.gamma is not None else tf.ones([self.channels])
        offset = self.beta if self.beta is not None else tf.zeros([self.channels])
        return scale, offset

    def _synchronized(self, x: tf.Tensor, ctx: tf.distribute.ReplicaContext):
        """Training under several replicas: the statistics of the global batch from one all-reduce of
        sum, sum of squares and count; returns (y, batch mean, unbiased batch variance)."""
        count = tf.cast(tf.reduce_prod(tf.shape(x)[:-1]), tf.float32)
        total, total_sq = tf.reduce_sum(x, [0, 1, 2]), tf.reduce_sum(tf.square(x), [0, 1, 2])
        total, total_sq, count = ctx.all_reduce(tf.distribute.ReduceOp.SUM, [total, total_sq, count])
        mean = total / count
        variance = tf.maximum(total_sq / count - tf.square(mean), 0.0)
        y = tf.nn.batch_normalization(x, mean, variance, self.beta, self.gamma, BN_EPSILON)
        return y, mean, variance * count / tf.maximum(count - 1.0, 1.0)

    def __call__(self, x: tf.Tensor, training: bool) -> tf.Tensor:
        dtype = x.dtype
        x = tf.cast(x, tf.float32)  # statistics in float32 also under mixed precision
        if training:
            ctx = tf.distribute.get_replica_context()
            if ctx is not None and ctx.num_replicas_in_sync > 1:
                y, mean, unbiased = self._synchronized(x, ctx)
            else:
                # normalises with the biased batch variance and returns the unbiased one (slim's fused path)
                y, mean, unbiased = tf.compat.v1.nn.fused_batch_norm(
                    x, *self._scale_offset(), epsilon=BN_EPSILON, is_training=True
                )
            self.moving_mean.assign_sub((1.0 - self.decay) * (self.moving_mean - mean))
            self.moving_variance.assign_sub((1.0 - self.decay) * (self.moving_variance - unbiased))
        else:
            y, _, _ = tf.compat.v1.nn.fused_batch_norm(
                x,
                *self._scale_offset(),
                mean=self.moving_mean,
                variance=self.moving_variance,
                epsilon=BN_EPSILON,
                is_training=False,
            )
        self.output_hw = int(y.shape[1])
        return tf.cast(y, dtype)
