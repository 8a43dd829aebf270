"""`metrics.jsonl` beside TensorBoard event files: the framework-free half of the torch and TF
`MetricsWriter`s (`shared.torch_train`, `shared.tf_train`), which add only the event-file backend."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path


def json_number(value):
    """A float for JSON: non-finite values become null (JSON has no NaN); other types pass through."""
    if isinstance(value, (bool, str)) or value is None:
        return value
    value = float(value)
    return value if math.isfinite(value) else None


class MetricsLog:
    """`scalars(step, {name: value}, **fields)` appends one JSON line {"step": step, **fields, **values}
    (non-finite values as null) to `jsonl_path` (default <run_dir>/metrics.jsonl) and writes each value
    as a TensorBoard scalar `name` at `step` into `events_dir` (default run_dir), so that
    `tensorboard --logdir runs/` shows every run folder as one run. Only the main process writes: pass
    `enabled=False` elsewhere. Subclasses open the event writer (`_open_events`, None for none) and
    write one scalar (`_add_scalar`)."""

    def __init__(
        self,
        run_dir: str | os.PathLike,
        *,
        enabled: bool = True,
        jsonl_path: str | os.PathLike | None = None,
        events_dir: str | os.PathLike | None = None,
    ):
        self.enabled = bool(enabled)
        self.run_dir = Path(run_dir)
        self.jsonl_path = Path(jsonl_path) if jsonl_path else self.run_dir / "metrics.jsonl"
        self.events_dir = Path(events_dir) if events_dir else self.run_dir
        self._writer = None
        if self.enabled:
            self.jsonl_path.parent.mkdir(parents=True, exist_ok=True)
            self.events_dir.mkdir(parents=True, exist_ok=True)
            self._writer = self._open_events()

    def _open_events(self):
        return None

    def _add_scalar(self, name: str, value: float, step: int) -> None:
        raise NotImplementedError

    def scalars(self, step: int, values: dict, **fields) -> None:
        if not self.enabled:
            return
        row = {"step": int(step), **fields, **{k: json_number(v) for k, v in values.items()}}
        with open(self.jsonl_path, "a") as f:
            f.write(json.dumps(row, allow_nan=False) + "\n")
        if self._writer is not None:
            for name, value in values.items():
                self._add_scalar(name, float(value), int(step))

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self.enabled = False

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
