"""A command run in the background while the other tests go on (e.g. the replica checks, which need a
fresh interpreter with 2 logical CPU devices): its output is kept in temporary files."""

from __future__ import annotations

import socket
import subprocess
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


class BackgroundRun:
    """A command started now, its output collected into temporary files (no pipe to fill up)."""

    def __init__(self, args: list[str]):
        self.out = tempfile.TemporaryFile("w+")
        self.err = tempfile.TemporaryFile("w+")
        self.process = subprocess.Popen(args, cwd=REPO, stdout=self.out, stderr=self.err, text=True)

    def result(self, timeout: float) -> tuple[int, str, str]:
        """(exit status, stdout, stderr), waiting at most `timeout` seconds for the end."""
        returncode = self.process.wait(timeout=timeout)
        self.out.seek(0)
        self.err.seek(0)
        return returncode, self.out.read(), self.err.read()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.out.close()
        self.err.close()


def free_ports(n: int) -> list[int]:
    """n loopback ports free at the time of the call (for TF_CONFIG workers, torch rendezvous)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()
