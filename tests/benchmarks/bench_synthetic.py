"""Benchmark the synthetic generator and writing its output to Parquet (run by hand).

    python tests/benchmarks/bench_synthetic.py --customers 100000 --days 365 --repeat 3

Prints median wall seconds, events per second, CPU seconds (user + system, useful on a busy
machine) and peak resident memory for generation, then for ``write_source``. Not collected by
pytest (the file name does not start with ``test_``).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path


def _peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MB (ru_maxrss is KB on Linux)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 / (1024 if sys.platform == "darwin" else 1)


def _cpu_seconds() -> float:
    """User + system CPU time of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=42)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Time ``generate`` and ``write_source`` ``--repeat`` times and print a summary."""
    args = _parse(argv)
    # Benchmark the checkout this file lives in, not whatever copy is installed.
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from features.sources import write_source
    from features.synthetic import generate

    gen_wall, gen_cpu, write_wall, write_cpu = [], [], [], []
    gen_peak = n_events = 0
    for _ in range(args.repeat):
        wall, cpu = time.perf_counter(), _cpu_seconds()
        data = generate(args.customers, args.days, seed=args.seed)
        gen_wall.append(time.perf_counter() - wall)
        gen_cpu.append(_cpu_seconds() - cpu)
        gen_peak = gen_peak or _peak_rss_mb()  # after the first run, before any write
        n_events = len(data.events)
        with tempfile.TemporaryDirectory() as tmp:
            wall, cpu = time.perf_counter(), _cpu_seconds()
            write_source(data, Path(tmp) / "synthetic")
            write_wall.append(time.perf_counter() - wall)
            write_cpu.append(_cpu_seconds() - cpu)
        del data

    print(f"synthetic: {args.customers:,} customers x {args.days} days, {n_events:,} events")
    for label, walls, cpus, peak in (
        ("generate", gen_wall, gen_cpu, gen_peak),
        ("write_source", write_wall, write_cpu, _peak_rss_mb()),
    ):
        median = statistics.median(walls)
        print(
            f"{label:>12}: median {median:6.2f} s  ({n_events / median:,.0f} events/s)  "
            f"cpu {statistics.median(cpus):6.2f} s  peak RSS {peak:,.0f} MB  "
            f"runs {', '.join(f'{w:.2f}' for w in walls)}"
        )


if __name__ == "__main__":
    main()
