"""Waiting for a started service to answer: the main job, the benchmark and the tests
start `bentoml serve` in a subprocess and must not hang on one that never comes up."""

from __future__ import annotations

import subprocess
import time


def wait_ready(url: str, proc: subprocess.Popen, limit: float = 120) -> None:
    """Poll ``url``/readyz until it answers 200; raise RuntimeError if the process exits
    or ``limit`` seconds pass (the process is killed then)."""
    import requests

    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"bentoml serve exited with status {proc.returncode}")
        try:
            if requests.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"{url} not ready after {limit:.0f} s")
