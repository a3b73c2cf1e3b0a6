"""Benchmark: generate ~10M synthetic events, then load them (validate, resolve identities,
write the month-partitioned store). Medians of several fresh-process runs.

    python tests/benchmarks/bench_data.py --customers 100000 --days 365 --repeat 3
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import child_report, median_of, run_child, save


def _child(args: argparse.Namespace) -> None:
    from features.settings import get_settings

    if args.stage == "generate":
        from features.sources.base import write_source
        from features.sources.synthetic import generate

        t0 = time.perf_counter()
        data = generate(n_customers=args.customers, days=args.days, seed=args.seed)
        gen = time.perf_counter() - t0
        t1 = time.perf_counter()
        write_source(data, Path(args.workdir) / "raw")
        child_report(gen, events=len(data.events), write_seconds=time.perf_counter() - t1)
    elif args.stage == "ingest":
        from features.store.ingest import ingest

        settings = get_settings({"OMNI_HOME": str(Path(args.workdir) / f"home-{time.time_ns()}")})
        t0 = time.perf_counter()
        result = ingest(Path(args.workdir) / "raw", settings)
        seconds = time.perf_counter() - t0
        child_report(seconds, events=len(result.load.data.events), steps=result.seconds)
        shutil.rmtree(settings.home, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--stage", default="generate", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args)
        return

    workdir = Path(tempfile.mkdtemp(prefix="omni-bench-ingest-"))
    base = [
        f"--customers={args.customers}",
        f"--days={args.days}",
        f"--seed={args.seed}",
        f"--workdir={workdir}",
    ]
    script = Path(__file__)
    try:
        gen = median_of(
            [run_child(script, [*base, "--stage=generate"]) for _ in range(args.repeat)]
        )
        ing = median_of([run_child(script, [*base, "--stage=ingest"]) for _ in range(args.repeat)])
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    n = gen["runs"][0]["events"]
    print(
        f"\n{args.customers:,} customers x {args.days} days = {n:,} events "
        f"(median of {args.repeat} fresh-process runs)"
    )
    print(f"{'stage':<34}{'seconds':>10}{'events/s':>14}{'peak RSS MB':>14}")
    write_s = sorted(r["write_seconds"] for r in gen["runs"])[len(gen["runs"]) // 2]
    rows = [
        ("generate (in memory)", gen["seconds"], gen["peak_rss_mb"]),
        ("write raw Parquet", write_s, None),
        ("load: validate+identity+store", ing["seconds"], ing["peak_rss_mb"]),
    ]
    for name, s, mem in rows:
        mem_s = f"{mem:>14,.0f}" if mem is not None else f"{'':>14}"
        print(f"{name:<34}{s:>10.2f}{n / s:>14,.0f}{mem_s}")
    steps = ing["runs"][0]["steps"]
    print("load breakdown (first run): " + ", ".join(f"{k} {v:.2f} s" for k, v in steps.items()))
    path = save(
        "ingest",
        {"customers": args.customers, "days": args.days, "events": n, "generate": gen, "load": ing},
    )
    print(f"results: {path}")


if __name__ == "__main__":
    main()
