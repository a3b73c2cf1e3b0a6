"""Benchmark: a sustained ingest beside reads, window by window (issue 17).

    python tests/benchmarks/bench_live_sustained.py [--home DIR] [--duration 60] [--window 10]

``bench_live.py`` takes each rate over its first seconds. Here one client ingests batches
of 1,000 new purchases for ``--duration`` seconds while a second reads ``/recommend``
back to back (the service, home and clients as in ``bench_live.py``), and the accepted
events/s, the reads' p50 and the private memory (``RssAnon``) of the worker and of its
refresh process are printed per ``--window`` seconds: whether the rate holds, and what
the state keeps of each event it takes (the refresh process's live events shrink at
each fold into the encoded stored ones).

A refresh recomputes each touched customer from all their events, so in a small home
the rate falls as the ingest lengthens every customer's history: 5,000 events/s over
5,000 customers add a purchase to each of them every second. The line printed under
the table gives that growth (events added per customer); a home with more customers
grows slower, as a larger store would. Results: bench_results/live_sustained.json.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from bench_live import IngestClient, memory_mb, prepare, recommend_latencies, served_copy
from harness import RESULTS_DIR, load_note, save


def windows(
    progress: list[tuple[float, int]],
    reads: list[tuple[float, float]],
    duration: float,
    step: float,
) -> list[dict]:
    """Accepted events/s and read p50 (ms) per ``step`` seconds of ``duration``, from the
    ingest's (seconds, accepted so far) and the reads' (seconds, ms); ``accepted``: the
    events taken by each window's end."""
    done = np.array(progress, dtype=float)
    edges = np.arange(0.0, duration + 1e-9, step)
    accepted = np.interp(edges, np.r_[0.0, done[:, 0]], np.r_[0.0, done[:, 1]])
    at = np.array([t for t, _ in reads])
    ms = np.array([m for _, m in reads])
    out = []
    for lo, hi, n in zip(edges[:-1], edges[1:], np.diff(accepted), strict=True):
        inside = ms[(at >= lo) & (at < hi)]
        p50 = float(np.median(inside)) if len(inside) else float("nan")
        out.append({"from_s": lo, "events_per_s": n / step, "read_p50_ms": p50})
    for w, total in zip(out, accepted[1:], strict=True):
        w["accepted"] = int(total)
    return out


def run(source: Path, duration: float, step: float) -> dict:
    with served_copy(source, "bench-sustained-") as (proc, url, customers, products):
        client = IngestClient(url, customers, products, "s", duration + 10, max_rate=8_000)
        stop, latencies, t0 = threading.Event(), [], time.perf_counter()
        args = (url, customers, stop, None, latencies)
        reader = threading.Thread(target=recommend_latencies, args=args)
        client.start()
        reader.start()
        stamps, memory = [], [memory_mb(proc)]
        while time.perf_counter() - t0 < duration:  # when each read ended (to 50 ms)
            time.sleep(0.05)
            stamps.extend([time.perf_counter() - t0] * (len(latencies) - len(stamps)))
            if time.perf_counter() - t0 >= len(memory) * step:  # each window's end
                memory.append(memory_mb(proc))
        if len(memory) <= round(duration / step):  # the last window's end fell after the loop
            memory.append(memory_mb(proc))
        stop.set()
        progress = client.stop()
        reader.join()
    reads = list(zip(stamps, latencies, strict=False))
    out = windows(progress, reads, duration, step)
    for w, mb in zip(out, memory[1:], strict=False):
        w |= {"worker_mb": mb["worker_anon"], "refresh_mb": mb["refresh_anon"]}
    return {
        "customers": len(customers),
        "windows": out,
        "events_per_customer": progress[-1][1] / len(customers),
        "start_mb": {"worker": memory[0]["worker_anon"], "refresh": memory[0]["refresh_anon"]},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--home", type=Path, default=RESULTS_DIR / "live_home")
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--window", type=float, default=10.0)
    args = parser.parse_args()
    prepare(args.home)
    result = run(args.home, args.duration, args.window)
    print(f"{result['customers']:,} customers, back-to-back reads beside ({load_note()}):")
    start_mb = result["start_mb"]
    print("| seconds | events/s | /recommend p50 ms | worker MB | refresh MB |")
    print("|---|---:|---:|---:|---:|")
    print(f"| start | | | {start_mb['worker']:.0f} | {start_mb['refresh']:.0f} |")
    for w in result["windows"]:
        to = w["from_s"] + args.window
        mb = f"{w.get('worker_mb', float('nan')):.0f} | {w.get('refresh_mb', float('nan')):.0f}"
        print(
            f"| {w['from_s']:.0f}-{to:.0f} | {w['events_per_s']:,.0f} | {w['read_p50_ms']:.2f} "
            f"| {mb} |"
        )
    print(f"events added per customer: {result['events_per_customer']:.1f}")
    last = result["windows"][-1]
    if "worker_mb" in last and last["accepted"]:
        per_event = {
            role: (last[f"{role}_mb"] - start_mb[role]) * 2**20 / last["accepted"]
            for role in ("worker", "refresh")
        }
        print(
            f"private memory added per event taken: worker {per_event['worker']:.0f} B, "
            f"refresh process {per_event['refresh']:.0f} B (with its folds)"
        )
    save("live_sustained", result | {"duration_s": args.duration, "window_s": args.window})


if __name__ == "__main__":
    main()
