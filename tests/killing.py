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
from typing import IO

import numpy as np

SLOW_RENAMES = Path(__file__).resolve().parent / "slow_renames"


@dataclass
class KillReport:
    """How the kills landed: killed mid-way, or the command finished before its kill."""

    killed: int = 0
    finished: int = 0
    lengths: list[float] = field(default_factory=list)  # of the runs that beat their kill


def omni_process(
    *args: str, home: Path, slow_renames: float = 0.0, output: IO | None = None, **env: str
) -> subprocess.Popen:
    """Start the real CLI in its own process group (so a kill reaches its children too);
    its output goes to ``output`` (a file), else nowhere."""
    environ = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    environ |= {"OMNI_HOME": str(home), "COLUMNS": "120", **env}
    if slow_renames:
        path = environ.get("PYTHONPATH")
        environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SLOW_RENAMES), path]))
        environ["OMNI_TEST_RENAME_DELAY"] = str(slow_renames)
    return subprocess.Popen(
        [sys.executable, "-m", "serving.cli", *args],
        env=environ,
        stdout=output or subprocess.DEVNULL,
        stderr=subprocess.STDOUT if output else subprocess.DEVNULL,
        start_new_session=True,
    )


def _kill_group(proc: subprocess.Popen) -> bool:
    """SIGKILL the process group now; False if it had already ended."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    proc.wait(timeout=60)
    return True


def kill_at(proc: subprocess.Popen, delay: float) -> bool:
    """SIGKILL the process group after ``delay`` seconds; False if it had already ended."""
    try:
        proc.wait(timeout=delay)
        return False
    except subprocess.TimeoutExpired:
        pass
    return _kill_group(proc)


@dataclass
class Run:
    """One run to kill: ``delay`` seconds after ``zero`` (a :func:`time.perf_counter`
    moment), or, with ``mark``, after that file appears (see tests/slow_renames)."""

    proc: subprocess.Popen
    zero: float
    delay: float
    mark: Path | None = None


def kill_each_at(runs: list[Run], timeout: float = 300.0) -> list[tuple[bool, float]]:
    """SIGKILL each run's process group at its moment. For each run: whether the kill
    landed while it still ran, and when it was seen to end. Runs side by side, each on its
    own home, take about the time of one: a writer under test mostly waits (its imports,
    the slow renames), and there are 2 cores."""
    out: list[tuple[bool, float]] = [(False, 0.0)] * len(runs)
    zero = {i: None if run.mark else run.zero for i, run in enumerate(runs)}
    pending = set(range(len(runs)))
    deadline = time.perf_counter() + timeout
    while pending:
        for i in sorted(pending):
            run, now = runs[i], time.perf_counter()
            if zero[i] is None and run.mark is not None and run.mark.exists():
                zero[i] = now
            if run.proc.poll() is not None:
                out[i] = (False, now)
            elif now > deadline or (zero[i] is not None and now >= zero[i] + run.delay):
                out[i] = (_kill_group(run.proc), time.perf_counter())
            else:
                continue
            pending.discard(i)
        time.sleep(0.002)
    return out


def wait_each(
    runs: list[tuple[subprocess.Popen, float]], timeout: float
) -> list[tuple[int, float]]:
    """Wait for runs started side by side (``(process, start)``, on the
    :func:`time.perf_counter` clock) to end: each one's exit code and seconds."""
    out = []
    for proc, t0 in runs:
        code = proc.wait(timeout=timeout)
        out.append((code, time.perf_counter() - t0))
    return out


def kill_loop(
    start: Callable[[int], subprocess.Popen],
    check: Callable[[int], None],
    kills: int,
    max_delay: float,
    seed: int = 0,
    min_delay: float = 0.0,
    side_by_side: int = 1,
    mark: Callable[[int], Path | None] = lambda i: None,
    after_mark: tuple[float, float] = (0.0, 0.0),
) -> KillReport:
    """Run ``start(i)`` ``kills`` times, SIGKILL each after a random delay in
    [min_delay, max_delay) seconds from its start, then ``check(i)``; ``side_by_side``
    runs at once. ``start`` prepares the home itself (e.g. a copy of the old state) and
    returns the running process. A run for which ``mark(i)`` names a file (the one its
    ``OMNI_TEST_RENAME_MARK`` creates at its first rename) is killed a delay in
    ``after_mark`` after that file appears instead: aimed at its writes, not at its
    imports, however long those take on a busy machine."""
    rng = np.random.default_rng(seed)
    report = KillReport()
    for lo in range(0, kills, side_by_side):
        batch = range(lo, min(lo + side_by_side, kills))
        runs = []
        for i in batch:
            marked = mark(i)
            low, high = after_mark if marked else (min_delay, max_delay)
            delay = float(rng.uniform(low, high))
            proc = start(i)
            runs.append(Run(proc, time.perf_counter(), delay, marked))
        for run, (landed, seen) in zip(runs, kill_each_at(runs), strict=True):
            report.killed += landed
            report.finished += not landed
            if not landed:
                report.lengths.append(seen - run.zero)  # its length, or a bound of it
        for i in batch:
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
