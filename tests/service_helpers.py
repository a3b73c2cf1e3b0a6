"""Real `omni serve` servers for the service tests: started on a free port with their
output captured to files, stopped with SIGTERM (SIGKILL after 20 s)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

from serving.process import free_port, wait_ready


def start(cmd: list[str], env: dict[str, str], url: str, out: Path, err: Path) -> subprocess.Popen:
    """Run ``cmd`` with stdout and stderr in ``out`` / ``err``; wait until ``url`` is ready
    (fail with the end of its output if it never is)."""
    with open(out, "w") as stdout, open(err, "w") as stderr:  # the child keeps its copies
        proc = subprocess.Popen(cmd, env=env, stdout=stdout, stderr=stderr, start_new_session=True)
    try:
        wait_ready(url, proc)
    except RuntimeError:
        stop(proc, grace=0)
        raise AssertionError(out.read_text()[-3000:] + err.read_text()[-3000:]) from None
    return proc


def stop(proc: subprocess.Popen, grace: float = 20) -> None:
    """Stop a server started in its own session, with every process it started: SIGTERM
    to the group, then SIGKILL to whatever is left after ``grace`` seconds (BentoML's and
    uvicorn's workers outlive a killed parent otherwise, holding their port and memory)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=20)


def omni_serve(home: Path, logs: Path, *args: str, **env: str) -> tuple[subprocess.Popen, str]:
    """`omni serve` on ``home`` and a free port (``args``: more options); its stdout and
    stderr go to ``logs``/stdout.txt and ``logs``/stderr.txt. Returns the process and the
    base URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    environ = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    environ |= {"OMNI_HOME": str(home), **env}
    logs.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "serving.cli", "serve", "--port", str(port), *args]
    proc = start(cmd, environ, url, logs / "stdout.txt", logs / "stderr.txt")
    return proc, url
