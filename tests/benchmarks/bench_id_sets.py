"""Benchmark: the journal's event-id set, as Python strings against fingerprints (issue 17).

    python tests/benchmarks/bench_id_sets.py [--ids 2000000] [--repeat 3]

The journal (and the live events until a fold) keeps every id it took, to count a
retried event once. Both ways are fed the same batches of 1,000 new 24-character ids, as
an ingest does: each batch is checked (``known``), then added. Each run is a fresh
process (its resident memory is the set's); the two alternate, and medians are printed
with the runs' ranges: resident bytes an id, the last 200 batches' median check and add,
and the slowest add (a set's resize, a run's merge). Results: bench_results/id_sets.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
import pandas as pd
from harness import load_note, run_child, save

WAYS = ("strings", "fingerprints")
BATCH = 1_000


def resident_bytes() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * 4096


def child(way: str, n: int) -> None:
    """One run: ``n`` ids in batches, each checked then added; prints the report."""
    from harness import child_report

    from serving.live.id_set import GrowingEventIdSet

    rng = np.random.default_rng(0)
    batches = [
        pd.Series([f"{x:024x}" for x in rng.integers(0, 2**62, BATCH)], dtype="str")
        for _ in range(n // BATCH)
    ]
    before, times = resident_bytes(), []
    if way == "strings":  # the way before, as Journal.known and Journal.append did it
        held: set[str] = set()
        for batch in batches:
            t0 = time.perf_counter()
            strings = pd.Series(batch).astype("str").to_numpy(dtype=object)
            np.fromiter(map(held.__contains__, strings), dtype=bool, count=len(strings))
            t1 = time.perf_counter()
            held.update(batch.astype("str"))
            times.append((t1 - t0, time.perf_counter() - t1))
    else:
        grown = GrowingEventIdSet()
        for batch in batches:
            t0 = time.perf_counter()
            grown.contains(batch)
            t1 = time.perf_counter()
            grown.add(batch)
            times.append((t1 - t0, time.perf_counter() - t1))
    ms = np.array(times) * 1e3
    child_report(
        float(ms.sum() / 1e3),
        bytes_per_id=(resident_bytes() - before) / n,
        check_ms=float(np.median(ms[-200:, 0])),
        add_ms=float(np.median(ms[-200:, 1])),
        slowest_add_ms=float(ms[:, 1].max()),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ids", type=int, default=2_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", nargs=2, metavar=("WAY", "IDS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]))
        return
    runs: dict[str, list[dict]] = {way: [] for way in WAYS}
    for i in range(args.repeat):  # alternated, the first way changing each time
        for way in WAYS if i % 2 == 0 else WAYS[::-1]:
            runs[way].append(run_child(Path(__file__), [way, str(args.ids)]))
    print(f"{args.ids:,} ids in batches of {BATCH:,}, {args.repeat} runs each ({load_note()}):")
    print("| measure | strings (Python set) | fingerprints (GrowingEventIdSet) |")
    print("|---|---:|---:|")
    for key, label in (
        ("bytes_per_id", "resident bytes an id"),
        ("check_ms", "check a batch, ms (median of the last 200)"),
        ("add_ms", "add a batch, ms (median of the last 200)"),
        ("slowest_add_ms", "slowest add, ms"),
    ):
        cells = []
        for way in WAYS:
            values = [r[key] for r in runs[way]]
            cells.append(f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})")
        print(f"| {label} | {' | '.join(cells)} |")
    save("id_sets", {"ids": args.ids, "batch": BATCH, "runs": runs})


if __name__ == "__main__":
    main()
