"""Benchmark plumbing: run each measurement in a fresh subprocess, report medians.

A fresh process per run gives an honest peak RSS (ru_maxrss never goes down within
a process) and no warm caches carried from one contender to the next.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parents[2] / "bench_results"


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_report(seconds: float, **extra: object) -> None:
    """Called by a child run: print one JSON line the parent reads."""
    print("BENCH " + json.dumps({"seconds": seconds, "peak_rss_mb": peak_rss_mb(), **extra}))


def run_child(script: Path, args: list[str], timeout: float = 1800) -> dict:
    """Run ``script --child ...`` once and parse its JSON report."""
    out = subprocess.run(
        [sys.executable, str(script), "--child", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"benchmark child failed: {' '.join(args)}\n{out.stderr[-3000:]}")
    line = next(ln for ln in out.stdout.splitlines() if ln.startswith("BENCH "))
    return json.loads(line[len("BENCH ") :])


def median_of(runs: list[dict]) -> dict:
    """Median seconds and peak memory of several runs (and every run, for the record)."""
    return {
        "seconds": statistics.median(r["seconds"] for r in runs),
        "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in runs),
        "runs": runs,
    }


def machine() -> dict:
    """What the numbers were measured on."""
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "load_1_5_15": os.getloadavg(),  # the machine may be shared: say how busy it was
    }


def load_note() -> str:
    """The load averages (1, 5, 15 min) to print beside results on a shared machine."""
    return "load average {:.1f} / {:.1f} / {:.1f}".format(*os.getloadavg())


def save(name: str, payload: dict) -> Path:
    """Write results as JSON under bench_results/."""
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **payload}, indent=2, default=str))
    return path


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    t0 = time.perf_counter()
    value = fn()
    return time.perf_counter() - t0, value


def omni(home: Path, *args: str) -> None:
    """Run the real `omni` CLI on ``home`` (for set-up steps), exiting on failure."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["OMNI_HOME"] = str(home)
    print(f"  omni {' '.join(args)}", flush=True)
    if subprocess.run([sys.executable, "-m", "serving.cli", *args], env=env).returncode:
        sys.exit(f"omni {' '.join(args)} failed")
