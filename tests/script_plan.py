"""The plan a reproduction script prints under DRY_RUN=1: the commands it would run, one per line.

The scripts fall back to $PRUNING_DATA_DIR / $PRUNING_CHECKPOINT_DIR (which CI sets); a test sees only
the folders it passes itself, so the plans do not depend on the machine the suite runs on.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MACHINE_FOLDERS = ("PRUNING_DATA_DIR", "PRUNING_CHECKPOINT_DIR")


def dry_run_plan(script: str, **env: str) -> list[str]:
    """The commands `bash script` prints (lines starting with "+ ", that prefix dropped), run from the
    repository root with DRY_RUN=1 and `env` on top of a copy of os.environ without the machine's folders."""
    base = {key: value for key, value in os.environ.items() if key not in MACHINE_FOLDERS}
    out = subprocess.run(["bash", str(REPO / script)], cwd=REPO, capture_output=True, text=True, timeout=120,
                         env={**base, "DRY_RUN": "1", **env}, check=True)  # fmt: skip
    return [line[2:] for line in out.stdout.splitlines() if line.startswith("+ ")]
