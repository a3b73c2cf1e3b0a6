"""Kill a real `omni` writer with SIGKILL at random moments, for crash-safety tests (issue 14).

``kill_loop`` starts the command again and again, kills its whole process group after a
random delay, and calls ``check`` on the home after each kill: the test asserts there that
the home reads back as the old or the new state, never a mix. With ``slow_renames`` every
``os.replace`` / ``os.rename`` in the writer first sleeps that long (tests/slow_renames/
sitecustomize.py), which widens the windows between renames where a kill used to land.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SLOW_RENAMES = Path(__file__).resolve().parent / "slow_renames"


@dataclass
class KillReport:
    """How the kills landed: killed mid-way, or the command finished before its kill."""

    killed: int = 0
    finished: int = 0
    delays: list[float] = field(default_factory=list)


def omni_process(*args: str, home: Path, slow_renames: float = 0.0, **env: str) -> subprocess.Popen:
    """Start the real CLI in its own process group (so a kill reaches its children too)."""
    environ = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    environ |= {"OMNI_HOME": str(home), "COLUMNS": "120", **env}
    if slow_renames:
        path = environ.get("PYTHONPATH")
        environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SLOW_RENAMES), path]))
        environ["OMNI_TEST_RENAME_DELAY"] = str(slow_renames)
    return subprocess.Popen(
        [sys.executable, "-m", "serving.cli", *args],
        env=environ,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def kill_at(proc: subprocess.Popen, delay: float) -> bool:
    """SIGKILL the process group after ``delay`` seconds; False if it had already ended."""
    try:
        proc.wait(timeout=delay)
        return False
    except subprocess.TimeoutExpired:
        pass
    with_group = True
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        with_group = False
    proc.wait(timeout=60)
    return with_group


def kill_loop(
    start: Callable[[int], subprocess.Popen],
    check: Callable[[int], None],
    kills: int,
    max_delay: float,
    seed: int = 0,
    min_delay: float = 0.0,
) -> KillReport:
    """Run ``start(i)`` ``kills`` times, SIGKILL each after a random delay in
    [min_delay, max_delay) seconds, then ``check(i)``. ``start`` prepares the home itself
    (e.g. a copy of the old state) and returns the running process."""
    rng = np.random.default_rng(seed)
    report = KillReport()
    for i in range(kills):
        delay = float(rng.uniform(min_delay, max_delay))
        proc = start(i)
        t0 = time.perf_counter()
        if kill_at(proc, delay):
            report.killed += 1
        else:
            report.finished += 1
        report.delays.append(time.perf_counter() - t0)
        check(i)
    return report


def ended_pid() -> int:
    """The pid of a process that has already exited (for markers and runs of dead owners)."""
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(done.stdout)
