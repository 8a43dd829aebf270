"""The inference graph of a (dense or slimmed) ResNet with every batch norm folded into its conv.

With moving statistics, BN after a conv is an affine map per output channel c:
    bn(conv(x, W))_c = s_c * conv(x, W)_c + (beta_c - s_c * mean_c),  s_c = gamma_c / sqrt(var_c + eps),
so conv + BN = conv(x, W * s) + b with b = beta - s * mean: one conv and one bias add instead of a conv
and four passes over the activations (subtract, scale, scale, shift). `FoldedResNet(model)(x)`
computes what `model(x, training=False)` does (up to float rounding); the bench exports it for the
dense and the slimmed network alike. Gated models (the search's pseudo-supernet) are not folded:
slim them first (`ekg_tf2.params.slim`).
"""

from __future__ import annotations

import tensorflow as tf

from ekg_tf2.models.resnet import ResNet
from ekg_tf2.models.tcl import BN_EPSILON


def bn_of(conv_label: str) -> str:
    """The BN that follows a conv: `conv` -> `bn`, `BasicBlock1.0/conv3` -> `BasicBlock1.0/bn3`."""
    head, _, tail = conv_label.rpartition("/")
    return (head + "/" if head else "") + "bn" + tail[len("conv") :]


class FoldedResNet(tf.Module):
    def __init__(self, model: ResNet):
        super().__init__(name="FoldedResNet")
        if model.gates:
            raise ValueError("a gated ResNet cannot be folded: slim it first (ekg_tf2.params.slim)")
        self.imagenet, self.blocks = model.imagenet, model.blocks
        self.strides, self.kernels, self.biases = {}, {}, {}
        for label, layer in model.layers.items():
            if label == "fc":
                continue
            if label.rpartition("/")[2].startswith("conv"):
                bn = model.layers[bn_of(label)]
                scale = bn.gamma * tf.math.rsqrt(bn.moving_variance + BN_EPSILON)  # [1, 1, 1, C]
                key = label.replace("/", "_").replace(".", "_")
                self.kernels[key] = tf.Variable(layer.kernel * scale, trainable=False, name=key + "_kernel")
                self.biases[key] = tf.Variable(
                    tf.reshape(bn.beta - scale * bn.moving_mean, [-1]), trainable=False, name=key + "_bias"
                )
                self.strides[key] = layer.stride
        fc = model.layers["fc"]
        self.fc_kernel = tf.Variable(fc.kernel, trainable=False, name="fc_kernel")
        self.fc_biases = tf.Variable(fc.biases, trainable=False, name="fc_biases")

    def _conv_bn(self, label: str, x: tf.Tensor) -> tf.Tensor:
        key = label.replace("/", "_").replace(".", "_")
        y = tf.nn.conv2d(x, self.kernels[key], self.strides[key], "SAME")
        return tf.nn.bias_add(y, self.biases[key])

    def __call__(self, x: tf.Tensor, training: bool = False) -> tf.Tensor:
        if training:
            raise ValueError("FoldedResNet is an inference graph (moving statistics); call the ResNet to train")
        x = tf.nn.relu(self._conv_bn("conv", x))
        if self.imagenet:
            x = tf.nn.max_pool2d(x, 3, 2, "SAME")
        for blk in self.blocks:
            p = blk["name"]
            h = x
            for c, _, _ in blk["inner"]:
                h = tf.nn.relu(self._conv_bn(f"{p}/{c}", h))
            h = self._conv_bn(f"{p}/{blk['last'][0]}", h)
            shortcut = self._conv_bn(f"{p}/conv3", x) if blk["projection"] else x
            x = tf.nn.relu(h + shortcut)
        x = tf.reduce_mean(x, [1, 2])
        return tf.matmul(x, self.fc_kernel) + self.fc_biases
