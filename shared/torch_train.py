"""PyTorch loop machinery shared by the torch subprojects (dsp_torch, bip_torch).

Imported only by torch subprojects: everything else in `shared` stays framework-free.

- Distributed: `setup_distributed()` reads torchrun's RANK / WORLD_SIZE / LOCAL_RANK (gloo on CPU,
  nccl on GPU); only rank 0 writes files.
- Accumulation: `accumulate_backward()` splits a global batch into micro-batches, divides the loss by
  their number and skips the DDP all-reduce (`no_sync()`) on all but the last one.
- Precision: `autocast()` gives bf16 autocast on GPU (no GradScaler is needed for bf16).
- Checkpoints: `save_atomic()` (temp file + rename) and `load_weights()` (`torch.load(weights_only=True)`,
  one clear error for a missing, truncated or foreign file).
- Data: `TensorLoader` keeps a CIFAR-sized data set on the device as uint8 and augments whole batches
  there (random crop with zero padding, horizontal flip), sharded per rank like DistributedSampler.
- Progress: `progress()` is a tqdm bar that stays quiet when stdout is not a terminal.
- Metrics: `MetricsWriter(run_dir)` writes metrics.jsonl and TensorBoard event files (rank 0 only).
"""

from __future__ import annotations

import contextlib
import os
import random
import sys
import types
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from shared.errors import UserError
from shared.metrics_log import MetricsLog

# ----------------------------------------------------------------------------------------------------
# Devices and distribution
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def pick_device(name: str = "auto") -> torch.device:
    """'auto' (cuda if available, else cpu), 'cpu', 'cuda' or 'cuda:N'."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {name} asked for, but no CUDA device is available")
    return torch.device(name)


def setup_distributed(device: str = "auto") -> DistContext:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1), else a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext(device=pick_device(device))
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    dev = pick_device(device)
    if dev.type == "cuda":
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return DistContext(rank, world, local_rank, dev)


def cleanup_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def wrap_ddp(model: nn.Module, ctx: DistContext) -> nn.Module:
    """DistributedDataParallel when running under torchrun, else the model itself."""
    if not ctx.distributed:
        return model
    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def all_reduce_sum(values: list[float], ctx: DistContext) -> list[float]:
    """Sum a few scalars over ranks (e.g. correct / total counts for accuracy)."""
    if not ctx.distributed:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=ctx.device)
    dist.all_reduce(t)
    return t.tolist()


def broadcast_module_(module: nn.Module, ctx: DistContext) -> None:
    """Copy rank 0's parameters and buffers to every rank (after a rank-local change such as pruning)."""
    if not ctx.distributed:
        return
    for t in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(t.data, src=0)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


# ----------------------------------------------------------------------------------------------------
# Precision and accumulation
# ----------------------------------------------------------------------------------------------------

PRECISIONS = ("fp32", "bf16")


def autocast(device: torch.device, precision: str):
    """bf16 autocast where asked (on GPU; on CPU too if requested explicitly); fp32 = no autocast."""
    if precision not in PRECISIONS:
        raise UserError(f"--precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def accumulate_backward(
    model: nn.Module,
    loss_fn,
    x: torch.Tensor,
    y: torch.Tensor,
    accum_steps: int,
    device: torch.device,
    precision: str = "fp32",
) -> float:
    """Forward/backward a batch as `accum_steps` micro-batches; gradients equal those of the whole batch.

    The loss (a mean over its micro-batch) is divided by the number of micro-batches; with DDP the
    gradient all-reduce runs only on the last micro-batch (`no_sync()` around forward and backward of
    the others). Returns the mean loss over the batch.
    """
    if accum_steps < 1 or x.shape[0] % accum_steps:
        raise UserError(f"batch of {x.shape[0]} does not split into {accum_steps} equal micro-batches")
    xs, ys = x.chunk(accum_steps), y.chunk(accum_steps)
    total = 0.0
    for i, (xm, ym) in enumerate(zip(xs, ys)):
        last = i == accum_steps - 1
        sync = contextlib.nullcontext() if (last or not hasattr(model, "no_sync")) else model.no_sync()
        with sync:
            with autocast(device, precision):
                loss = loss_fn(model(xm), ym) / accum_steps
            loss.backward()
        total += float(loss.detach())
    return total


# ----------------------------------------------------------------------------------------------------
# Checkpoints
# ----------------------------------------------------------------------------------------------------


def save_atomic(obj, path: str | os.PathLike) -> Path:
    """torch.save through a temporary file and a rename: a crash never leaves half a checkpoint.

    The object is serialised in memory first and written with `shared.paths.atomic_write_bytes`, so a
    failed write (read-only folder, no space left) raises WriteFailed naming the path and the cause
    (torch.save itself reports a full disk only as "unexpected pos"), and no temporary file is left."""
    import io

    from shared.paths import atomic_write_bytes

    path = Path(path)
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())
    return path


def is_torchscript_archive(path: str | os.PathLike) -> bool:
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    return any(n.endswith("/constants.pkl") or "/code/" in n for n in names)


def load_weights(path: str | os.PathLike, what: str = "checkpoint"):
    """torch.load(weights_only=True) with one clear error for the usual ways a file can be wrong."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} {path} does not exist")
    if is_torchscript_archive(path):
        raise UserError(
            f"{path} is a TorchScript archive (a packed or released model), not a {what} "
            "state dict; evaluate it with --ckpt on dsp_torch.eval / dsp_torch.flops"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated zip, foreign pickle, objects that would need code to load
        raise UserError(f"cannot load {what} {path}: {_why_not_loadable(path, err)}") from err


def _why_not_loadable(path: Path, err: Exception) -> str:
    """What the file is and what was expected, instead of torch's advice to set weights_only=False."""
    expected = "expected a file written by torch.save (tensors in plain dicts and lists)"
    try:
        with open(path, "rb") as f:
            head = f.read(4)
        size = path.stat().st_size
    except OSError as os_err:
        return f"cannot read it ({os_err.strerror or os_err})"
    if size == 0:
        return f"the file is empty (0 bytes); {expected}"
    text = str(err)
    if "Weights only load failed" in text:  # torch's long message: keep only the unpickler's reason
        reason = text.split("WeightsUnpickler error:", 1)[-1].strip().split("\n")[0].strip()
        if "Unsupported global" in reason:
            return (
                f"it holds objects that only code could rebuild ({reason[:160]}); it is not loaded, as "
                f"loading would run that code; {expected}"
            )
        if head.startswith(b"PK") or head[:1] == b"\x80":
            return f"a pickle the safe loader cannot read ({reason[:160]}); {expected}"
        return f"not a torch.save file ({size:,} bytes, neither a zip archive nor a pickle); {expected}"
    if head.startswith(b"PK"):
        return f"a damaged or truncated torch.save archive ({size:,} bytes); {expected}"
    if head[:1] == b"\x80":
        return f"a damaged or truncated pickle ({size:,} bytes: {type(err).__name__}); {expected}"
    return f"not a torch.save file ({size:,} bytes, neither a zip archive nor a pickle); {expected}"


# ----------------------------------------------------------------------------------------------------
# Device-resident image data
# ----------------------------------------------------------------------------------------------------


class TensorLoader:
    """Batches from a uint8 NHWC array held on the device, normalised there.

    Training: each epoch a seeded permutation of the whole set (identical on every rank) is cut into
    global batches (drop_last like the authors' loaders); each rank takes its contiguous share of each
    global batch; augmentation = random crop with `pad` zero pixels + horizontal flip, drawn per image.
    `pad_value="mean"` pads with the mean colour instead (zero in normalised space: what a pipeline that
    normalises before the pad-crop, e.g. BiP's TinyImageNet, sees).
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        batch_size: int,
        device: torch.device,
        mean,
        std,
        *,
        train: bool,
        pad: int = 4,
        flip: bool = True,
        seed: int = 0,
        ctx: DistContext | None = None,
        drop_last: bool | None = None,
        pad_value: str | float = 0.0,
    ):
        self.ctx = ctx or DistContext(device=device)
        if not (pad_value == "mean" or isinstance(pad_value, (int, float))):
            raise UserError(f"TensorLoader pad_value must be a pixel value or 'mean', got {pad_value!r}")
        if train and batch_size % self.ctx.world_size:
            raise UserError(f"--batch-size {batch_size} is not divisible by the {self.ctx.world_size} processes")
        self.images = torch.as_tensor(images).permute(0, 3, 1, 2).contiguous().to(device)  # uint8 NCHW
        self.labels = torch.as_tensor(labels, dtype=torch.long).to(device)
        self.batch_size, self.device, self.train = batch_size, device, train
        self.pad, self.flip, self.seed = pad, flip, seed
        self.mean = torch.tensor(mean, device=device).view(1, -1, 1, 1) * 255
        self.std = torch.tensor(std, device=device).view(1, -1, 1, 1) * 255
        self.drop_last = train if drop_last is None else drop_last
        self.pad_value = pad_value
        self.epoch = 0

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() - self.mean) / self.std

    def _augment(self, x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
        """Crop at offsets (dy, dx) from the padded images, then flip where `flip` is set."""
        n, _, h, w = x.shape
        if self.pad:
            if self.pad_value == "mean":  # pad x - mean with zeros, i.e. x with the mean colour
                padded = nn.functional.pad(x - self.mean, (self.pad,) * 4) + self.mean
            else:
                padded = nn.functional.pad(x, (self.pad,) * 4, value=float(self.pad_value))
            rows = (dy[:, None] + torch.arange(h)[None]).to(x.device)  # (n, h)
            cols = (dx[:, None] + torch.arange(w)[None]).to(x.device)  # (n, w)
            idx_n = torch.arange(n, device=x.device)[:, None, None]
            x = padded.permute(0, 2, 3, 1)[idx_n, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
        if self.flip:
            x = torch.where(flip.to(x.device)[:, None, None, None], x.flip(3), x)
        return x

    def __iter__(self):
        n = len(self.labels)
        gen = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(n, generator=gen) if self.train else torch.arange(n)
        share = self.batch_size // self.ctx.world_size if self.train else self.batch_size
        for b in range(len(self)):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            if not self.train:
                yield self._normalise(self.images[idx.to(self.device)]), self.labels[idx.to(self.device)]
                continue
            # Augmentation is drawn for the whole global batch, so every rank / micro-batch split of it
            # sees exactly the images a single process would.
            m = len(idx)
            dy = torch.randint(0, 2 * self.pad + 1, (m,), generator=gen)
            dx = torch.randint(0, 2 * self.pad + 1, (m,), generator=gen)
            flip = torch.rand(m, generator=gen) < 0.5
            mine = slice(self.ctx.rank * share, (self.ctx.rank + 1) * share)
            idx = idx[mine].to(self.device)
            x = self._augment(self.images[idx].float(), dy[mine], dx[mine], flip[mine])
            yield self._normalise(x), self.labels[idx]


# ----------------------------------------------------------------------------------------------------
# Progress
# ----------------------------------------------------------------------------------------------------


def progress(total: int, desc: str = "", enabled: bool = True, leave: bool = True):
    """A tqdm bar, disabled when stdout is not a terminal (logs stay clean) or on ranks other than 0;
    `leave=False` clears it when it closes (bars of sub-steps)."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, ncols=120, leave=leave, disable=not (enabled and sys.stdout.isatty()))


# ----------------------------------------------------------------------------------------------------
# Metrics: metrics.jsonl + TensorBoard events
# ----------------------------------------------------------------------------------------------------


def use_tensorboard_without_tensorflow() -> None:
    """Make the tensorboard package use its own TensorFlow stub instead of importing TensorFlow (which
    aborts in a process that holds torch: both link LLVM). tensorboard falls back to the stub when
    the module `tensorboard.compat.notf` exists; this registers an empty one."""
    if "tensorflow" not in sys.modules:
        sys.modules.setdefault("tensorboard.compat.notf", types.ModuleType("tensorboard.compat.notf"))


class MetricsWriter(MetricsLog):
    """`metrics.jsonl` and TensorBoard event files side by side (`shared.metrics_log.MetricsLog`; the same
    interface as `shared.tf_train.MetricsWriter`), the events through torch.utils.tensorboard. Only rank 0
    writes: pass `enabled=ctx.is_main`. Without the tensorboard package only metrics.jsonl is written,
    with one note on stderr."""

    def _open_events(self):
        use_tensorboard_without_tensorflow()
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as err:
            print(f"note: no TensorBoard events ({err}); writing {self.jsonl_path} only", file=sys.stderr)
            return None
        return SummaryWriter(log_dir=os.fspath(self.events_dir))

    def _add_scalar(self, name: str, value: float, step: int) -> None:
        self._writer.add_scalar(name, value, global_step=step)
