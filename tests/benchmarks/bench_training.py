"""Benchmark: training time of the churn and next-best-channel jobs (fit + baselines +
evaluation, no MLflow) on Complete Journey and on synthetic data. Fresh process per run.

    python tests/benchmarks/bench_training.py --customers 100000 --days 365 --repeat 3
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import child_report, median_of, run_child, save


def _child(args: argparse.Namespace) -> None:
    from features.store.identity import resolve_identities
    from training.customer_models.job import train_churn, train_next_channel

    if args.source == "complete_journey":
        from features.sources.complete_journey import load_complete_journey

        data = load_complete_journey()
        events = data.events
    else:
        from features.sources.synthetic import generate

        data = generate(n_customers=args.customers, days=args.days, seed=7)
        events, _ = resolve_identities(data.events)
    job = {"churn": train_churn, "channel": train_next_channel}[args.job]
    t0 = time.perf_counter()
    result = job(events, data.customers)
    child_report(
        time.perf_counter() - t0, events=len(events), rows=result.rows, metrics=result.metrics
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--sources", default="complete_journey,synthetic")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--source", default="synthetic", help=argparse.SUPPRESS)
    parser.add_argument("--job", default="churn", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args)
        return
    results = {}
    print(f"{'source':<18}{'job':<9}{'events':>12}{'train rows':>12}{'median s':>10}{'peak MB':>9}")
    for source in args.sources.split(","):
        for job in ("churn", "channel"):
            cli = [
                f"--source={source}",
                f"--job={job}",
                f"--customers={args.customers}",
                f"--days={args.days}",
            ]
            runs = median_of(
                [run_child(Path(__file__), cli, timeout=3600) for _ in range(args.repeat)]
            )
            first = runs["runs"][0]
            results[f"{source}/{job}"] = runs
            print(
                f"{source:<18}{job:<9}{first['events']:>12,}{first['rows']['train']:>12,}"
                f"{runs['seconds']:>10.1f}{runs['peak_rss_mb']:>9,.0f}",
                flush=True,
            )
    print(f"results: {save('training', results)}")


if __name__ == "__main__":
    main()
