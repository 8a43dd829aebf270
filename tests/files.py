"""What a folder holds, to assert that a refused command changed nothing."""

from __future__ import annotations

import hashlib
import os


def snapshot(folder) -> dict[str, str]:
    """Every file under `folder` -> hash of its content (a changed, added or removed file shows)."""
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, folder)] = hashlib.sha256(f.read()).hexdigest()
    return out
