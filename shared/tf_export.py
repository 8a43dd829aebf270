"""Export a TensorFlow 2 model and run it under every CPU runtime at hand (TF subprojects only).

A model is given as `forward(images) -> logits` (e.g. `lambda x: model(x, training=False)`) and the
`tf.Module` holding its variables (`trackable`); `example` is a batch (numpy or tensor) that fixes the
input's shape after the (dynamic) batch dimension and its dtype.

- `save_savedmodel(forward, example, path, trackable)` / `load_savedmodel(path)`: a SavedModel with a
  `serve` function (and the `serving_default` signature), batch dimension dynamic;
- `to_tflite(forward, example, path, trackable)`: a TFLite flatbuffer (TF 2.21's converter;
  `tflite_runner` runs it with the LiteRT interpreter of `ai-edge-litert`, which replaces the
  deprecated `tf.lite.Interpreter`; XNNPACK on the CPU);
- `to_onnx(forward, example, path)`: ONNX through tf2onnx (checked with TF 2.21, numpy 2.4, tf2onnx 1.17);
- `runtimes(forward, example, trackable)`: {runtime name: callable(batch) -> numpy logits} for
  tf.function, XLA (jit_compile), TFLite and onnxruntime (and the reloaded SavedModel on request),
  leaving out with a printed reason any runtime whose package is missing or whose export fails;
  `runtimes_for_models({name: model}, example, workdir=...)` the same for several models at once
  ("<name> <runtime>" keys), as the benches compare a dense and a pruned model;
- `check_equal(fns, forward, example)`: max |difference| of each runtime's output from `forward`'s.

The onnxruntime runner lives in `shared.bench` (numpy in, numpy out, no framework).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from shared import tf_train  # noqa: E402
from shared.bench import RuntimeUnavailable, max_abs_diff, onnxruntime_runner  # noqa: E402

TF_RUNTIMES = ("tf.function", "xla", "tflite", "onnxruntime", "savedmodel")
DEFAULT_RUNTIMES = ("tf.function", "xla", "tflite", "onnxruntime")

Runner = Callable[[object], np.ndarray]


def input_spec(example, name: str = "input") -> tf.TensorSpec:
    """A TensorSpec like `example` with a dynamic batch dimension."""
    example = tf.convert_to_tensor(example)
    return tf.TensorSpec([None, *example.shape[1:]], example.dtype, name=name)


def set_threads(threads: int) -> bool:
    """Fix TensorFlow's intra-op threads (inter-op 1). Only possible before TF's runtime starts (the
    first op): returns False, changing nothing, when it is too late."""
    try:
        tf.config.threading.set_intra_op_parallelism_threads(int(threads))
        tf.config.threading.set_inter_op_parallelism_threads(1)
        return True
    except RuntimeError:
        return tf.config.threading.get_intra_op_parallelism_threads() == int(threads)


def _serving_module(forward: Callable, example, trackable: tf.Module | None) -> tf.Module:
    module = tf.Module()
    if trackable is not None:
        module.model = trackable  # tracks the variables, so they are saved with the function
    module.serve = tf.function(forward, input_signature=[input_spec(example)])
    return module


def _replace_dir(tmp: Path, path: Path) -> None:
    """Move the finished folder `tmp` to `path`, replacing an older export there."""
    if path.exists():
        old = path.with_name(f".{path.name}.old{os.getpid()}")
        os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, path)


def save_savedmodel(forward: Callable, example, path: str | os.PathLike, trackable: tf.Module | None = None) -> Path:
    """Write a SavedModel folder whose `serve(images)` (also the `serving_default` signature) is
    `forward`. Written to a temporary folder beside `path`, then renamed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        module = _serving_module(forward, example, trackable)
        tf.saved_model.save(
            module, os.fspath(tmp), signatures={"serving_default": module.serve.get_concrete_function()}
        )
        _replace_dir(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def load_savedmodel(path: str | os.PathLike) -> Callable:
    """The `serve` function of a SavedModel written by `save_savedmodel` (the returned callable keeps
    the loaded object, which owns the variables, alive)."""
    loaded = tf.saved_model.load(os.fspath(path))

    def serve(x):
        return loaded.serve(x)

    serve.loaded = loaded
    return serve


def _write_bytes(data: bytes, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def to_tflite(forward: Callable, example, path: str | os.PathLike, trackable: tf.Module | None = None) -> Path:
    """Convert `forward` to a TFLite flatbuffer (fp32, no quantisation, batch dimension dynamic)."""
    module = _serving_module(forward, example, trackable)
    concrete = module.serve.get_concrete_function()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], module)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        flatbuffer = converter.convert()
    return _write_bytes(flatbuffer, Path(path))


def _interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter
    except ImportError:
        pass
    if hasattr(tf, "lite") and hasattr(tf.lite, "Interpreter"):  # deprecated since TF 2.20
        return tf.lite.Interpreter
    raise RuntimeUnavailable("no TFLite interpreter: install ai-edge-litert (the LiteRT runtime)")


def tflite_runner(path: str | os.PathLike, threads: int = 1) -> Runner:
    """The TFLite file `path` in the LiteRT interpreter (XNNPACK, `threads` threads); the input is
    resized when the batch size changes."""
    interp = _interpreter_class()(model_path=os.fspath(path), num_threads=int(threads))
    inp = interp.get_input_details()[0]
    out_index = interp.get_output_details()[0]["index"]
    state = {"shape": None}

    def run(x) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=inp["dtype"])
        if state["shape"] != x.shape:
            interp.resize_tensor_input(inp["index"], x.shape)
            interp.allocate_tensors()
            state["shape"] = x.shape
        interp.set_tensor(inp["index"], x)
        interp.invoke()
        return interp.get_tensor(out_index).copy()

    return run


def to_onnx(forward: Callable, example, path: str | os.PathLike, *, opset: int = 17) -> Path:
    """Convert `forward` to ONNX with tf2onnx (input 'input', batch dimension dynamic)."""
    try:
        import tf2onnx
    except ImportError as err:
        raise RuntimeUnavailable(f"tf2onnx is not installed ({err})") from err
    logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    fn = tf.function(lambda x: forward(x))
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model_proto, _ = tf2onnx.convert.from_function(fn, input_signature=[input_spec(example)], opset=opset)
    return _write_bytes(model_proto.SerializeToString(), Path(path))


def tf_runner(fn: Callable) -> Runner:
    """callable(batch) -> numpy for a TF function."""
    return lambda x: fn(tf.convert_to_tensor(x)).numpy()


def runtimes(
    forward: Callable,
    example,
    trackable: tf.Module | None = None,
    *,
    names: Sequence[str] = DEFAULT_RUNTIMES,
    threads: int = 1,
    workdir: str | os.PathLike | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Runner]:
    """{runtime: callable(batch) -> numpy logits} for `forward` on the CPU, fp32.

    tf.function (graph), xla (`jit_compile=True`, through `shared.tf_train.compile_fn`), tflite and
    onnxruntime (files written to `workdir`, a temporary folder by default), savedmodel (saved and
    reloaded). `threads` sets the TFLite and onnxruntime threads; TensorFlow's own are fixed by
    `set_threads` before the first op. A runtime that cannot be had is left out with a line through
    `log` saying why."""
    unknown = [n for n in names if n not in TF_RUNTIMES]
    if unknown:
        raise ValueError(f"unknown runtime(s) {unknown}; expected some of {TF_RUNTIMES}")
    folder = Path(workdir) if workdir else None
    out: dict[str, Runner] = {}
    for name in names:
        try:
            if folder is None and name in ("tflite", "onnxruntime", "savedmodel"):
                folder = Path(tempfile.mkdtemp(prefix="tf-export-"))
            if name == "tf.function":
                out[name] = tf_runner(tf_train.compile_fn(forward, jit_compile=False))
            elif name == "xla":
                out[name] = tf_runner(tf_train.compile_fn(forward, jit_compile=True))
            elif name == "tflite":
                out[name] = tflite_runner(to_tflite(forward, example, folder / "model.tflite", trackable), threads)
            elif name == "onnxruntime":
                out[name] = onnxruntime_runner(to_onnx(forward, example, folder / "model.onnx"), threads)
            else:
                out[name] = tf_runner(load_savedmodel(save_savedmodel(forward, example, folder / "saved", trackable)))
        except RuntimeUnavailable as err:
            log(f"runtime {name} skipped: {err}")
        except Exception as err:  # an export failure: say so, keep the other runtimes
            log(f"runtime {name} skipped: {type(err).__name__}: {str(err).splitlines()[0][:200]}")
    return out


def runtimes_for_models(
    models: dict[str, tf.Module],
    example,
    *,
    names: Sequence[str] = DEFAULT_RUNTIMES,
    threads: int = 1,
    workdir: str | os.PathLike,
    log: Callable[[str], None] = print,
) -> dict[str, Runner]:
    """`runtimes` for several models called as `model(x, training=False)` (e.g. {"dense": ..., "pruned":
    ...}): {"<model name> <runtime>": callable(batch) -> numpy logits}, each model's files under
    `workdir/<model name>`, each log line prefixed with the model's name."""
    out: dict[str, Runner] = {}
    for kind, model in models.items():
        made = runtimes(
            lambda x, m=model: m(x, training=False),
            example,
            model,
            names=names,
            threads=threads,
            workdir=Path(workdir) / kind,
            log=lambda line, k=kind: log(f"{k}: {line}"),
        )
        out.update({f"{kind} {rt}": run for rt, run in made.items()})
    return out


def check_equal(fns: dict[str, Runner], forward: Callable, example) -> dict[str, float]:
    """{runtime: max |output - forward(example)|}."""
    ref = np.asarray(forward(tf.convert_to_tensor(example)))
    return {name: max_abs_diff(fn(np.asarray(example)), ref) for name, fn in fns.items()}
