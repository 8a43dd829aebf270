"""Export a PyTorch model and run it under every CPU runtime at hand (torch subprojects only).

- `export_onnx(model, example, path)`: ONNX through `torch.onnx.export` (the torch.export-based
  exporter), batch dimension dynamic;
- `save_exported(model, example, path)` / `load_exported(path)`: a `torch.export` program (.pt2);
- `scripted(model, example)`: TorchScript, frozen (deprecated in torch 2.14 but still the fastest
  eager-free path here; kept as a named runtime), `compiled(model)`: `torch.compile`;
- `runtimes(model, example, ...)`: {runtime name: callable(batch) -> numpy logits} for eager, scripted,
  compiled (optional), onnxruntime and OpenVINO, skipping (with a printed reason) any runtime whose
  package is missing or whose export fails;
- `check_equal(fns, model, example)`: max |difference| of each runtime's output from the eager model's.

The onnxruntime and OpenVINO runners live in `shared.bench` (they take numpy and know no framework).
Security: `torch.export.load` and TorchScript files unpickle data; load only files from a trusted source.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from shared.bench import RuntimeUnavailable, max_abs_diff, onnxruntime_runner, openvino_runner

TORCH_RUNTIMES = ("eager", "scripted", "compiled", "onnxruntime", "openvino")
DEFAULT_RUNTIMES = ("eager", "scripted", "onnxruntime", "openvino")

Runner = Callable[[object], np.ndarray]


def _batch_dim() -> torch.export.Dim:
    return torch.export.Dim("batch", min=1, max=4096)


def _dynamic(example: torch.Tensor, dynamic_batch: bool):
    return ({0: _batch_dim()},) if dynamic_batch else None


@contextlib.contextmanager
def _quiet_torch_logs():
    """torch.export logs every failed guard with a traceback; the exception raised says enough."""
    logger = logging.getLogger("torch")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def export_onnx(
    model: nn.Module,
    example: torch.Tensor,
    path: str | os.PathLike,
    *,
    opset: int = 18,
    dynamic_batch: bool = True,
) -> Path:
    """Write `model` (eval mode, fp32) as an ONNX file with input 'input' and output 'logits'.

    Uses the torch.export-based exporter (`dynamo=True`, torch's default); its progress messages are
    kept off stdout. The file is written through a temporary name and renamed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    model = model.eval()
    try:
        with torch.no_grad(), _quiet_torch_logs(), contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                model,
                (example,),
                dynamo=True,
                input_names=["input"],
                output_names=["logits"],
                dynamic_shapes=_dynamic(example, dynamic_batch),
                opset_version=opset,
                external_data=False,
            )
            program.save(os.fspath(tmp))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def save_exported(model: nn.Module, example: torch.Tensor, path: str | os.PathLike, *, dynamic_batch=True) -> Path:
    """`torch.export.export` the eval-mode model and save the program to `path` (.pt2), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        program = torch.export.export(model.eval(), (example,), dynamic_shapes=_dynamic(example, dynamic_batch))
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        torch.export.save(program, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def export_program(model: nn.Module, example: torch.Tensor, *, dynamic_batch: bool = True):
    """`torch.export.export` of the eval-mode model (batch dimension dynamic): trace once, then write it
    with `save_program` and `program_to_onnx` (each tracing costs seconds on a ResNet)."""
    with torch.no_grad():
        return torch.export.export(model.eval(), (example,), dynamic_shapes=_dynamic(example, dynamic_batch))


def save_program(program, path: str | os.PathLike) -> Path:
    """Save an exported program to `path` (.pt2), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.pt2")
    try:
        torch.export.save(program, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def program_to_onnx(program, path: str | os.PathLike, *, opset: int = 18) -> Path:
    """Write an exported program as ONNX (input 'input', output 'logits'; its dynamic dimensions kept),
    atomically, without tracing the model again."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with _quiet_torch_logs(), contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            onnx_program = torch.onnx.export(
                program, dynamo=True, input_names=["input"], output_names=["logits"], opset_version=opset,
                external_data=False,
            )  # fmt: skip
            onnx_program.save(os.fspath(tmp))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_exported(path: str | os.PathLike) -> nn.Module:
    """The module of a saved `torch.export` program (trusted files only: it unpickles)."""
    return torch.export.load(os.fspath(path)).module()


def scripted(model: nn.Module, example: torch.Tensor | None = None, *, freeze: bool = True):
    """TorchScript of the eval-mode model (traced when an example is given, else scripted), frozen."""
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = model.eval()
        ts = torch.jit.trace(model, example) if example is not None else torch.jit.script(model)
        return torch.jit.freeze(ts) if freeze else ts


def compiled(model: nn.Module):
    """`torch.compile(model)` (inductor). The first call compiles (seconds to minutes)."""
    return torch.compile(model.eval())


def torch_runner(module, threads: int | None = None) -> Runner:
    """callable(batch: numpy or tensor) -> numpy output, under inference_mode (CPU)."""

    def run(x) -> np.ndarray:
        if threads:
            torch.set_num_threads(threads)
        with torch.inference_mode():
            return module(torch.as_tensor(x)).numpy()

    return run


def runtimes(
    model: nn.Module,
    example: torch.Tensor,
    *,
    names: Sequence[str] = DEFAULT_RUNTIMES,
    threads: int = 1,
    workdir: str | os.PathLike | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Runner]:
    """{runtime: callable(batch) -> numpy logits} for `model` on the CPU, fp32, eval mode.

    Runtimes (`names`, in this order): eager, scripted (traced + frozen TorchScript), compiled
    (torch.compile), onnxruntime and OpenVINO (both from one ONNX export written to `workdir`, a
    temporary folder by default; with a dynamic batch dimension, or, where the model pins its batch
    size, with the example's batch size only, said through `log`). `threads` fixes torch's intra-op
    threads and each runtime's. A runtime whose package is missing or whose export fails is left out
    with a line through `log` saying why."""
    unknown = [n for n in names if n not in TORCH_RUNTIMES]
    if unknown:
        raise ValueError(f"unknown runtime(s) {unknown}; expected some of {TORCH_RUNTIMES}")
    torch.set_num_threads(threads)
    model = model.eval()
    out: dict[str, Runner] = {}
    onnx_path = None
    for name in names:
        try:
            if name == "eager":
                out[name] = torch_runner(model)
            elif name == "scripted":
                out[name] = torch_runner(scripted(model, example))
            elif name == "compiled":
                out[name] = torch_runner(compiled(model))
            else:
                if onnx_path is None:
                    folder = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="torch-export-"))
                    try:
                        onnx_path = export_onnx(model, example, folder / "model.onnx")
                    except Exception as err:  # e.g. a shape op that pins the batch: export that batch only
                        onnx_path = export_onnx(model, example, folder / "model.onnx", dynamic_batch=False)
                        log(
                            f"ONNX export with a fixed batch of {example.shape[0]} (a dynamic batch failed: "
                            f"{type(err).__name__}: {str(err).splitlines()[0][:120]})"
                        )
                maker = onnxruntime_runner if name == "onnxruntime" else openvino_runner
                out[name] = maker(onnx_path, threads)
        except RuntimeUnavailable as err:
            log(f"runtime {name} skipped: {err}")
        except Exception as err:  # an export or compilation failure: say so, keep the other runtimes
            log(f"runtime {name} skipped: {type(err).__name__}: {str(err).splitlines()[0][:200]}")
    return out


def check_equal(fns: dict[str, Runner], model: nn.Module, example: torch.Tensor) -> dict[str, float]:
    """{runtime: max |output - eager output|} on `example`."""
    with torch.inference_mode():
        ref = model.eval()(example).numpy()
    return {name: max_abs_diff(fn(example.numpy()), ref) for name, fn in fns.items()}
