"""Export of a DCP-pruned model that is really smaller AND faster, and PocketFlow's export for comparison.

PocketFlow's exporters (tools/conversion/export_chn_pruned_tflite_model.py) shrink only each conv's
input: for NHWC graphs they insert a 1x1 conv with a one-hot c_in -> kept kernel (a "gather") before
the shrunk conv, and every producing layer still computes all its channels; users measured the result
slower than the dense model (3.54 ms dense vs 4.53 ms DCP on ResNet-20, issue #189).

`build(model, mode)` returns an inference-only tf.Module computing the masked model's logits:
- mode "slim" (ours): a block-internal conv whose successor reads only some of its channels computes
  only those (kernel columns removed), the BN between is folded into it as a per-channel scale and bias,
  and the successor's kernel loses the same rows: exact, no gather. Convs reading the residual stream
  (the first conv and the projection of a block, which PocketFlow's variant prunes) gather their kept
  input channels with tf.gather, a copy rather than a 1x1 conv. The paper variant prunes only
  block-internal convs, so its export has no gather at all;
- mode "pocketflow": PocketFlow's transformation (one-hot 1x1 conv + shrunk conv for every pruned conv,
  producers unchanged), with the same BN folding, so the two differ only in the structure;
- mode "dense": the unpruned network with the same folding (the fastest way we run the dense model).

`export_all` writes SavedModel and TFLite files of the slim model into the eval folder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

from dcp_tf.models.layers import conv as conv_op

MODES = ("slim", "pocketflow", "dense")


def _np(v) -> np.ndarray:
    return np.asarray(tf.convert_to_tensor(v).numpy())


def _affine(bn) -> tuple[np.ndarray, np.ndarray]:
    scale, shift = bn.affine()
    return _np(scale), _np(shift)


def _kept(conv, mode: str) -> np.ndarray:
    if mode == "dense":
        return np.arange(conv.c_in)
    return np.flatnonzero(_np(conv.mask) > 0)


def _const(a, dtype=np.float32) -> tf.Variable:
    """A frozen tensor of the exported graph (a variable, so that SavedModel, TFLite and tf2onnx fold it)."""
    return tf.Variable(np.asarray(a).astype(dtype), trainable=False)


class _Conv(tf.Module):
    """One conv of the exported graph: optional input selection, kernel, optional bias, optional ReLU."""

    def __init__(self, kernel, stride, select=None, onehot=False, bias=None, relu=False):
        super().__init__()
        self.kernel = _const(kernel)
        self.stride, self.relu = stride, relu
        self.bias = None if bias is None else _const(bias)
        self.select = None
        if select is not None:
            if onehot:  # PocketFlow's 1x1 "gather" conv
                c_in = select[1]
                eye = np.zeros((1, 1, c_in, len(select[0])), np.float32)
                eye[0, 0, select[0], np.arange(len(select[0]))] = 1.0
                self.select = ("conv", _const(eye))
            else:
                self.select = ("gather", _const(select[0], np.int32))

    def __call__(self, x):
        if self.select is not None:
            kind, s = self.select
            x = tf.nn.conv2d(x, s, 1, "VALID") if kind == "conv" else tf.gather(x, s, axis=3)
        y = conv_op(x, self.kernel, self.stride)
        if self.bias is not None:
            y = tf.nn.bias_add(y, self.bias)
        return tf.nn.relu(y) if self.relu else y


class Exported(tf.Module):
    """The inference network of a (masked) ResNet in one of MODES."""

    def __init__(self, model, mode: str = "slim"):
        super().__init__(name=f"dcp_{mode}")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        self.mode, self.dataset = mode, model.dataset
        hw = 32 if model.dataset == "cifar10" else 224
        self.stem = _Conv(_np(model.stem.kernel), model.stem.stride)
        self.blocks = []
        for blk in model.blocks:
            self.blocks.append(self._block(blk, mode))
        self.final = _affine(model.final_bn)
        self.dense = (_np(model.dense.kernel), _np(model.dense.bias))
        self.final = tuple(_const(a) for a in self.final)
        self.dense = tuple(_const(a) for a in self.dense)
        self.serve = tf.function(self._forward, input_signature=[tf.TensorSpec([None, hw, hw, 3], tf.float32)])

    def __call__(self, images):
        return self.serve(images)

    def _block(self, blk, mode: str) -> dict:
        scale1, shift1 = _affine(blk.bns[0])
        out = {"bn1": (_const(scale1), _const(shift1)), "preact_shortcut": blk.preact_shortcut}
        out["proj"] = None
        if blk.proj is not None:
            out["proj"] = self._reader(blk.proj, mode)
        convs = []
        n = len(blk.main)
        for j, c in enumerate(blk.main):
            kernel = _np(c.kernel)
            last = j == n - 1
            if j == 0:
                conv_in = self._input_select(c, mode)
                rows = conv_in[0] if conv_in is not None else np.arange(c.c_in)
                kernel = kernel[:, :, rows, :]
            elif mode == "slim":  # rows already removed from the producer's output
                kernel = kernel[:, :, _kept(c, mode), :]
            else:
                conv_in = self._input_select(c, mode)
                if conv_in is not None:
                    kernel = kernel[:, :, conv_in[0], :]
            bias = None
            if not last:  # fold the next BN (+ReLU) into this conv; slim: only its kept channels
                nxt = blk.main[j + 1]
                cols = _kept(nxt, mode) if mode == "slim" else np.arange(c.c_out)
                scale, shift = _affine(blk.bns[j + 1])
                kernel = kernel[:, :, :, cols] * scale[cols]
                bias = shift[cols]
            select = None
            if j == 0:
                select = self._input_select(c, mode)
            elif mode == "pocketflow":
                select = self._input_select(c, mode)
            convs.append(_Conv(kernel, c.stride, select, onehot=mode == "pocketflow", bias=bias, relu=not last))
        out["convs"] = convs
        return out

    def _input_select(self, c, mode: str):
        kept = _kept(c, mode)
        return None if len(kept) == c.c_in else (kept, c.c_in)

    def _reader(self, c, mode: str) -> _Conv:
        select = self._input_select(c, mode)
        kernel = _np(c.kernel)
        if select is not None:
            kernel = kernel[:, :, select[0], :]
        return _Conv(kernel, c.stride, select, onehot=mode == "pocketflow")

    def _forward(self, images):
        x = self.stem(images)
        if self.dataset == "ilsvrc12":
            x = tf.nn.max_pool2d(x, 3, 2, "SAME")
        for blk in self.blocks:
            scale, shift = blk["bn1"]
            pre = tf.nn.relu(x * scale + shift)
            shortcut = pre if blk["preact_shortcut"] else x
            if blk["proj"] is not None:
                shortcut = blk["proj"](shortcut)
            h = pre
            for c in blk["convs"]:
                h = c(h)
            x = h + shortcut
        scale, shift = self.final
        x = tf.reduce_mean(tf.nn.relu(x * scale + shift), [1, 2])
        return tf.matmul(x, self.dense[0]) + self.dense[1]


def build(model, mode: str = "slim") -> Exported:
    return Exported(model, mode)


def weight_count(module: Exported) -> int:
    """Numbers stored in the exported graph's kernels, biases and BN affines (one-hot gathers included)."""
    total = int(np.prod(module.stem.kernel.shape))
    for blk in module.blocks:
        total += sum(int(np.prod(t.shape)) for t in blk["bn1"])
        convs = blk["convs"] + ([blk["proj"]] if blk["proj"] is not None else [])
        for c in convs:
            total += int(np.prod(c.kernel.shape)) + (int(np.prod(c.bias.shape)) if c.bias is not None else 0)
            if c.select is not None and c.select[0] == "conv":
                total += int(np.prod(c.select[1].shape))
    return total + sum(int(np.prod(t.shape)) for t in (*module.final, *module.dense))


def to_tflite(module: Exported) -> bytes:
    fn = module.serve.get_concrete_function()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([fn], module)
    return converter.convert()


def export_all(model, folder: str | Path, mode: str = "slim") -> dict[str, Path]:
    """SavedModel (`saved_model/`, signature serving_default: images -> logits) and `model.tflite`."""
    folder = Path(folder)
    module = build(model, mode)
    sm = folder / "saved_model"
    tf.saved_model.save(module, str(sm), signatures={"serving_default": module.serve.get_concrete_function()})
    lite = folder / "model.tflite"
    tmp = lite.with_suffix(".tflite.tmp")
    tmp.write_bytes(to_tflite(module))
    tmp.replace(lite)
    return {"saved_model": sm, "tflite": lite}


def run_tflite(content: bytes, images: np.ndarray) -> np.ndarray:
    import warnings

    with warnings.catch_warnings():  # tf.lite.Interpreter's deprecation notice (the LiteRT package)
        warnings.simplefilter("ignore")
        interp = tf.lite.Interpreter(model_content=content, num_threads=None)
    inp = interp.get_input_details()[0]
    interp.resize_tensor_input(inp["index"], list(images.shape))
    interp.allocate_tensors()
    interp.set_tensor(inp["index"], images.astype(np.float32))
    interp.invoke()
    return interp.get_tensor(interp.get_output_details()[0]["index"])
