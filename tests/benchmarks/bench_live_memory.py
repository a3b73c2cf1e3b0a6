"""Benchmark: memory of the online state per customer (issue 17's 1M customers in 4 GB).

    python tests/benchmarks/bench_live_memory.py HOME [HOME ...] [--settle 5]

Each HOME is a trained synthetic home with a snapshot (``omni run --customers N``, a year
of history). For each, the service is started as `omni serve` starts it (one worker,
live events on, the journal as `omni run`'s demo left it: a few events) and, ``--settle``
seconds after it answers, the resident memory of the worker and of its live refresh
process is read. Printed: a table customers x (worker MB, refresh MB); per-customer KB
come from the difference of
two homes (the fixed cost of the models and the interpreter cancels out).
"""

from __future__ import annotations

import argparse
import itertools
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_live import rss_mb, start
from harness import load_note


def measure(home: Path, settle: float) -> dict:
    """(customers, worker MB, refresh MB) of a service started on ``home``."""
    from features.settings import get_settings
    from features.store.events import read_table

    customers = len(read_table(get_settings({"OMNI_HOME": str(home)}).store_dir, "customers"))
    work = Path(tempfile.mkdtemp(prefix="bench-mem-"))
    proc, _url = start(home, work / "service.log")
    try:
        time.sleep(settle)
        rss = rss_mb(proc)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        shutil.rmtree(work, ignore_errors=True)
    return {"customers": customers, **rss}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("homes", type=Path, nargs="+")
    parser.add_argument("--settle", type=float, default=5.0)
    args = parser.parse_args()
    rows = [measure(h, args.settle) for h in args.homes]
    print(f"({load_note()})")
    print("| customers | worker MB | refresh MB |\n|---:|---:|---:|")
    for r in rows:
        print(f"| {r['customers']:,} | {r['worker']:,.0f} | {r['refresh']:,.0f} |")
    for a, b in itertools.pairwise(rows):
        n = b["customers"] - a["customers"]
        if n:
            per = {k: (b[k] - a[k]) * 1024 / n for k in ("worker", "refresh")}
            print(f"{a['customers']:,} -> {b['customers']:,}: worker {per['worker']:.1f} KB, "
                  f"refresh {per['refresh']:.1f} KB a customer")  # fmt: skip


if __name__ == "__main__":
    main()
