"""Services in subprocesses: a free port to start them on, and waiting until they answer.
The main job, the benchmark and the tests start `bentoml serve` this way and must not hang
on one that never comes up."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path


def free_port(preferred: int = 0) -> int:
    """``preferred`` when nothing listens there, else a port the system picks."""
    for port in dict.fromkeys((preferred, 0)):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise RuntimeError("no free port")


def wait_ready(
    url: str, proc: subprocess.Popen, limit: float = 120, log: Path | None = None
) -> None:
    """Poll ``url``/readyz until it answers 200; raise RuntimeError if the process exits
    or ``limit`` seconds pass (the process is killed then). ``log``: the file the process
    writes to, whose last lines the error then quotes (why it did not come up)."""
    import requests

    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"bentoml serve exited with status {proc.returncode}{_tail(log)}")
        try:
            if requests.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"{url} not ready after {limit:.0f} s{_tail(log)}")


def _tail(log: Path | None, lines: int = 8) -> str:
    """``log``'s last ``lines`` lines, indented after a line naming it ("" without one)."""
    if log is None:
        return ""
    try:
        last = log.read_text(errors="replace").splitlines()[-lines:]
    except OSError as exc:
        return f"; its log {log} could not be read: {exc}"
    shown = "".join(f"\n    {line}" for line in last) or "\n    (empty)"
    return f"; the end of its log ({log}):{shown}"
