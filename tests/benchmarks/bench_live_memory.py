"""Benchmark: memory of the online state per customer (issue 17's 1M customers in 4 GB).

    python tests/benchmarks/bench_live_memory.py HOME [HOME ...] [--settle 5] [--read-all]

Each HOME is a trained synthetic home with a snapshot (``omni run --customers N``, a year
of history). For each, the service is started as `omni serve` starts it (one worker,
live events on, the journal as `omni run`'s demo left it: a few events) and, ``--settle``
seconds after it answers, the resident memory of the worker and of its live refresh
process is read. Printed: a table customers x (worker MB, refresh MB); per-customer KB
come from the difference of
two homes (the fixed cost of the models and the interpreter cancels out).

Each figure is also split (``/proc/PID/status``) into private memory (``RssAnon``: the
process's own heap) and file pages (``RssFile``: mapped files, the snapshot's serving
arrays among them, which workers share and the system can take back). With
``--read-all``, every customer's ``/recommend`` is asked once after the first reading and
the memory read again: every list page the worker maps is then resident.
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

from bench_live import PARTS, ROLES, memory_mb, start
from harness import load_note


def read_everyone(url: str, customers: list[str]) -> None:
    """Ask every customer's ``/recommend`` once (their lists' pages mapped in)."""
    import requests

    with requests.Session() as session:
        for customer in customers:
            answer = session.post(
                f"{url}/recommend", json={"customer_id": customer, "k": 10}, timeout=30
            )
            answer.raise_for_status()


def measure(home: Path, settle: float, read_all: bool) -> list[dict]:
    """The memory of a service started on ``home`` (``memory_mb``), ``settle`` seconds
    after it answers, and with ``read_all`` again after every customer was read."""
    from features.settings import get_settings
    from features.store.events import read_table

    ids = read_table(get_settings({"OMNI_HOME": str(home)}).store_dir, "customers")["customer_id"]
    customers = ids.astype(str).tolist()
    work = Path(tempfile.mkdtemp(prefix="bench-mem-"))
    proc, url = start(home, work / "service.log")
    rows = []
    try:
        time.sleep(settle)
        rows.append({"customers": len(customers), "when": "started", **memory_mb(proc)})
        if read_all:
            read_everyone(url, customers)
            time.sleep(1)
            rows.append({"customers": len(customers), "when": "all read", **memory_mb(proc)})
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        shutil.rmtree(work, ignore_errors=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("homes", type=Path, nargs="+")
    parser.add_argument("--settle", type=float, default=5.0)
    parser.add_argument("--read-all", action="store_true", help="read every customer once too")
    args = parser.parse_args()
    rows = [r for h in args.homes for r in measure(h, args.settle, args.read_all)]
    print(f"({load_note()})")
    cells = [f"{role} {part}" for role in ROLES for part in PARTS]
    print(f"| customers | when | {' | '.join(cells)} |")
    print("|---:|---|" + "---:|" * len(cells))
    keys = [f"{role}_{part}" for role in ROLES for part in PARTS]
    for r in rows:
        values = " | ".join(f"{r[k]:,.0f}" for k in keys)
        print(f"| {r['customers']:,} | {r['when']} | {values} |")
    for when in dict.fromkeys(r["when"] for r in rows):
        same = [r for r in rows if r["when"] == when]
        for a, b in itertools.pairwise(same):
            n = b["customers"] - a["customers"]
            if n:
                per = ", ".join(
                    f"{k.replace('_', ' ')} {(b[k] - a[k]) * 1024 / n:.1f}" for k in keys
                )
                print(f"{when}, {a['customers']:,} -> {b['customers']:,}, KB a customer: {per}")


if __name__ == "__main__":
    main()
