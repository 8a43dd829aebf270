"""Conv, batch norm and dense modules (tf.Module + tf.nn ops), with DCP's input-channel masks.

Every conv carries `mask`, a non-trainable 0/1 vector over its input channels: PocketFlow's mask per
kernel holds the same information (its masks are whole input-channel slices). Pruning follows
PocketFlow: the kernel's pruned slices are set to zero once ("prune op"), and every optimiser step
multiplies the kernel's gradient by the mask (`masked_gradient`), so the slices stay exactly zero
through weight decay, momentum and Adam. The forward pass uses the kernel as it is.

Padding follows TF-official's ResNet (`fixed_padding`): a strided conv pads (k-1)//2 before and the
rest after, then runs VALID; this also equals PyTorch's symmetric padding of the authors' models.
"""

from __future__ import annotations

import math

import tensorflow as tf


def he_normal(shape, seed: tuple[int, int]) -> tf.Tensor:
    """Variance-scaling (fan-in, scale 2) truncated normal, TF-official's conv initialiser."""
    fan_in = shape[0] * shape[1] * shape[2] if len(shape) == 4 else shape[0]
    std = math.sqrt(2.0 / fan_in) / 0.87962566103423978  # truncation correction, as tf.keras does
    return tf.random.stateless_truncated_normal(shape, seed=seed, stddev=std)


class Conv2D(tf.Module):
    """A bias-free conv with an input-channel mask. `index` is its position in graph-creation order."""

    def __init__(self, label: str, c_in: int, c_out: int, kernel: int, stride: int, *, role: str, seed):
        super().__init__(name=label.replace(".", "_"))
        self.label, self.role, self.stride, self.size = label, role, int(stride), int(kernel)
        self.index = -1
        self.kernel = tf.Variable(he_normal((kernel, kernel, c_in, c_out), seed), name="kernel")
        self.mask = tf.Variable(tf.ones([c_in]), trainable=False, name="mask")
        self.output_hw: int | None = None

    @property
    def c_in(self) -> int:
        return int(self.kernel.shape[2])

    @property
    def c_out(self) -> int:
        return int(self.kernel.shape[3])

    def mask4(self) -> tf.Tensor:
        return tf.reshape(self.mask, [1, 1, -1, 1])

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        y = conv(x, tf.cast(self.kernel, x.dtype), self.stride)
        self.output_hw = int(y.shape[1])
        return y


def conv(x: tf.Tensor, kernel: tf.Tensor, stride: int) -> tf.Tensor:
    """TF-official's conv2d_fixed_padding (NHWC)."""
    k = int(kernel.shape[0])
    if stride > 1:
        before = (k - 1) // 2
        after = k - 1 - before
        if before or after:
            x = tf.pad(x, [[0, 0], [before, after], [before, after], [0, 0]])
        return tf.nn.conv2d(x, kernel, stride, "VALID")
    return tf.nn.conv2d(x, kernel, 1, "SAME")


class BatchNorm(tf.Module):
    """Batch norm over N, H, W with gamma and beta.

    Training: batch statistics; when `update` is true the moving averages move towards them
    (m <- m - (1 - decay)(m - batch_stat), unbiased variance). Inference: moving averages. Under several
    replicas the batch statistics are those of the global batch (one all-reduce of sum, sum of squares
    and count), so R replicas compute what one device computes on the same global batch.
    """

    def __init__(self, label: str, channels: int, *, decay: float, epsilon: float):
        super().__init__(name=label.replace(".", "_"))
        self.label, self.decay, self.epsilon = label, float(decay), float(epsilon)
        self.gamma = tf.Variable(tf.ones([channels]), name="gamma")
        self.beta = tf.Variable(tf.zeros([channels]), name="beta")
        stat = {
            "trainable": False,
            "synchronization": tf.VariableSynchronization.ON_READ,
            "aggregation": tf.VariableAggregation.MEAN,
        }
        self.moving_mean = tf.Variable(tf.zeros([channels]), name="moving_mean", **stat)
        self.moving_variance = tf.Variable(tf.ones([channels]), name="moving_variance", **stat)

    @property
    def channels(self) -> int:
        return int(self.gamma.shape[0])

    def __call__(self, x: tf.Tensor, training: bool, update: bool = True) -> tf.Tensor:
        dtype = x.dtype
        x = tf.cast(x, tf.float32)
        if not training:
            y = tf.nn.batch_normalization(
                x, self.moving_mean, self.moving_variance, self.beta, self.gamma, self.epsilon
            )
            return tf.cast(y, dtype)
        ctx = tf.distribute.get_replica_context()
        count = tf.cast(tf.reduce_prod(tf.shape(x)[:-1]), tf.float32)
        total, total_sq = tf.reduce_sum(x, [0, 1, 2]), tf.reduce_sum(tf.square(x), [0, 1, 2])
        if ctx is not None and ctx.num_replicas_in_sync > 1:
            total, total_sq, count = ctx.all_reduce(tf.distribute.ReduceOp.SUM, [total, total_sq, count])
        mean = total / count
        variance = tf.maximum(total_sq / count - tf.square(mean), 0.0)
        y = tf.nn.batch_normalization(x, mean, variance, self.beta, self.gamma, self.epsilon)
        if update:
            unbiased = variance * count / tf.maximum(count - 1.0, 1.0)
            self.moving_mean.assign_sub((1.0 - self.decay) * (self.moving_mean - mean))
            self.moving_variance.assign_sub((1.0 - self.decay) * (self.moving_variance - unbiased))
        return tf.cast(y, dtype)

    def affine(self) -> tuple[tf.Tensor, tf.Tensor]:
        """Inference BN as y = x * scale + shift."""
        scale = self.gamma / tf.sqrt(tf.convert_to_tensor(self.moving_variance) + self.epsilon)
        return scale, self.beta - tf.convert_to_tensor(self.moving_mean) * scale


class Dense(tf.Module):
    def __init__(self, label: str, d_in: int, d_out: int, seed, init: str = "he"):
        super().__init__(name=label.replace(".", "_"))
        self.label = label
        if init == "glorot":  # tf.layers.dense's default (PocketFlow's aux heads)
            limit = math.sqrt(6.0 / (d_in + d_out))
            w = tf.random.stateless_uniform((d_in, d_out), seed=seed, minval=-limit, maxval=limit)
        else:
            w = he_normal((d_in, d_out), seed) * 0.5
        self.kernel = tf.Variable(w, name="kernel")
        self.bias = tf.Variable(tf.zeros([d_out]), name="bias")

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        return tf.matmul(tf.cast(x, tf.float32), self.kernel) + self.bias
