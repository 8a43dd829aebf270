"""Optimisers with DCP's gradient masks (PocketFlow applies the mask to every optimiser's gradients).

Written out (rather than Keras optimisers) so that the update rule is exactly the original's and the
slots are plain variables checkpointed with the run:
- `Adam`: tf.train.AdamOptimizer (TF1): m <- b1 m + (1-b1) g, v <- b2 v + (1-b2) g^2,
  w <- w - lr sqrt(1-b2^t)/(1-b1^t) m / (sqrt(v) + eps), defaults b1 0.9, b2 0.999, eps 1e-8;
- `Momentum`: tf.train.MomentumOptimizer: a <- mu a + g, w <- w - lr a; with `nesterov`
  w <- w - lr (g + mu a), which is also torch.optim.SGD(nesterov=True); `weight_decay` adds wd w to the
  gradient first (PyTorch's form, the authors' code); `clip_norm` clips the gradients' global norm first
  (torch.nn.utils.clip_grad_norm_).

`apply(grads)` multiplies the gradient of each masked kernel by its input-channel mask AFTER weight
decay and clipping, so a pruned slice gets exactly zero gradient and, with zero-initialised slots, an
exactly zero update: pruned weights stay exactly 0.0. Call `apply` in cross-replica context (inside
shared.tf_train.TrainStep's apply_update) or without a strategy.
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf


def masked(grads, masks):
    return [g if m is None else g * tf.reshape(m, [1, 1, -1, 1]) for g, m in zip(grads, masks)]


class _Optimizer(tf.Module):
    def __init__(self, variables: Sequence[tf.Variable], masks: Sequence, lr: float, name: str):
        super().__init__(name=name)
        self.vars = list(variables)
        self.masks = list(masks)
        if len(self.masks) != len(self.vars):
            raise ValueError("one mask (or None) per variable")
        self.lr = tf.Variable(float(lr), trainable=False, name="lr")
        self.iterations = tf.Variable(0, dtype=tf.int64, trainable=False, name="iterations")

    def _slot(self, v, name):
        return tf.Variable(tf.zeros(v.shape, v.dtype), trainable=False, name=name)

    def prepare(self, grads):
        return masked(list(grads), self.masks)


class Adam(_Optimizer):
    def __init__(self, variables, masks, lr=1e-3, beta1=0.9, beta2=0.999, epsilon=1e-8, name="adam"):
        super().__init__(variables, masks, lr, name)
        self.beta1, self.beta2, self.epsilon = beta1, beta2, epsilon
        self.m = [self._slot(v, "m") for v in self.vars]
        self.v = [self._slot(v, "v") for v in self.vars]

    def apply(self, grads):
        grads = self.prepare(grads)
        self.iterations.assign_add(1)
        t = tf.cast(self.iterations, tf.float32)
        lr_t = self.lr * tf.sqrt(1.0 - self.beta2**t) / (1.0 - self.beta1**t)
        for var, g, m, v in zip(self.vars, grads, self.m, self.v):
            m.assign(self.beta1 * m + (1.0 - self.beta1) * g)
            v.assign(self.beta2 * v + (1.0 - self.beta2) * tf.square(g))
            var.assign_sub(lr_t * m / (tf.sqrt(v) + self.epsilon))


class Momentum(_Optimizer):
    def __init__(
        self, variables, masks, lr=0.1, momentum=0.9, nesterov=False, weight_decay=0.0, clip_norm=None, name="momentum"
    ):
        super().__init__(variables, masks, lr, name)
        self.momentum, self.nesterov = momentum, nesterov
        self.weight_decay, self.clip_norm = weight_decay, clip_norm
        self.accum = [self._slot(v, "accum") for v in self.vars]

    def apply(self, grads):
        grads = list(grads)
        if self.weight_decay:
            grads = [g + self.weight_decay * v for g, v in zip(grads, self.vars)]
        if self.clip_norm:
            grads, _ = tf.clip_by_global_norm(grads, self.clip_norm)
        grads = self.prepare(grads)
        self.iterations.assign_add(1)
        for var, g, a in zip(self.vars, grads, self.accum):
            a.assign(self.momentum * a + g)
            step = g + self.momentum * a if self.nesterov else a
            var.assign_sub(self.lr * step)
