"""Benchmark: the main job's resident memory, step by step (stop 47).

    python tests/benchmarks/bench_main_job_memory.py [--customers 20000] [--home DIR]

Runs `omni run --customers N` on a new home (``--home``, default a temporary folder,
removed after) and samples the resident memory of its process and every child every
0.25 s. Prints, for each step the job reports done (its "✓" lines), the largest
process's peak since the step before, and the whole run's peak: what a machine needs to
run the job at that size. Results: bench_results/main_job_memory.json.

The job runs in-process step after step, so a step's peak includes what the steps before
it left resident; `serving.collector.free_between_steps` hands that back between steps.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import psutil
from harness import load_note, save

EVERY_S = 0.25


class PeakSampler:
    """The largest resident memory of ``pid`` or any descendant, since the last
    :meth:`take`, sampled on a thread every :data:`EVERY_S` seconds."""

    def __init__(self, pid: int) -> None:
        self.root = psutil.Process(pid)
        self.peak = self.overall = 0
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _sample(self) -> None:
        while True:
            try:
                procs = [self.root, *self.root.children(recursive=True)]
            except psutil.Error:  # the job has ended and been reaped
                return
            largest = 0
            for proc in procs:
                with contextlib.suppress(psutil.Error):  # ended after the listing
                    largest = max(largest, proc.memory_info().rss)
            with self.lock:
                self.peak = max(self.peak, largest)
                self.overall = max(self.overall, largest)
            time.sleep(EVERY_S)

    def take(self) -> int:
        """The peak since the last call, in bytes."""
        with self.lock:
            peak, self.peak = self.peak, 0
        return peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--home", type=Path, help="a new folder (default: temporary)")
    args = parser.parse_args()
    work = None if args.home else Path(tempfile.mkdtemp(prefix="bench-main-job-"))
    home = args.home or work / "home"
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env |= {"OMNI_HOME": str(home), "COLUMNS": "120"}
    cmd = [sys.executable, "-m", "serving.cli", "run", "--customers", str(args.customers)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    sampler = PeakSampler(proc.pid)
    steps, step_peak, tail = [], 0, []
    try:
        for line in proc.stdout:
            tail = [*tail[-20:], line.rstrip()]
            step_peak = max(step_peak, sampler.take())
            if line.lstrip().startswith("✓"):
                name = line.strip().lstrip("✓ ").rsplit(" (", 1)[0]
                steps.append({"step": name, "peak_gb": step_peak / 1e9})
                print(f"{step_peak / 1e9:6.2f} GB  {name}", flush=True)
                step_peak = 0
        code = proc.wait()
    finally:
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)
    if code != 0:
        raise SystemExit("omni run failed:\n" + "\n".join(tail))
    seconds = time.perf_counter() - t0
    peak = max(sampler.overall, sampler.take()) / 1e9
    print(f"\n{args.customers:,} customers: peak {peak:.2f} GB (largest process), "
          f"{seconds:.0f} s ({load_note()})")  # fmt: skip
    save("main_job_memory", {"customers": args.customers, "peak_gb": peak,
                             "seconds": seconds, "steps": steps})  # fmt: skip


if __name__ == "__main__":
    main()
