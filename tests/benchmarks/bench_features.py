"""Benchmark: the full customer feature build vs the core aggregates in Polars and DuckDB.

    python tests/benchmarks/bench_features.py --events 10000000 --customers 1000000 --repeat 3

The events are generated once per size (seeded, contract dtypes, written to a temporary
Parquet file). Every measurement then runs in a fresh process that reads that file into
pandas (not timed) and times one contender on it:

- polars: the reference query of the core aggregates (days since the last purchase,
  purchases in 30 days, spend in 30 / 365 days, share of purchases per channel, store
  visits, distinct stores) over ``[T - 365 d, T)``, grouped by customer. The frame is
  converted to Polars first; that conversion is reported but *not* counted, which
  favours Polars.
- duckdb: the same query in SQL over the same pandas frame, registered without copying.
- ours: ``build_customer_features`` (all features, all windows) from the pandas frame,
  string ids included.

Contenders run interleaved, ``--repeat`` times each; the table shows medians. Peak
memory is the child's peak resident set *during the timed call* (Linux ``VmHWM``,
reset just before it through ``/proc/self/clear_refs``), so it includes the events
already in memory and the interpreter but not the Parquet read (Arrow's pool is
released first); it is compared with the events' in-memory size
(``memory_usage(deep=True)``). "added" is that peak minus the resident set just before
the call. For Polars the pandas frame is dropped after conversion, so its peak counts
its own copy of the events instead.
Every library runs with its default threads on this machine (printed below).
A scaling run (1M / 10M / 30M events, one repeat) shows how cost grows.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import child_report, run_child, save

AS_OF = "2025-12-01"
CONTENDERS = ("polars", "duckdb", "ours")


def _current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _reset_peak_rss() -> bool:
    """Start a new peak-RSS measurement (Linux: writing 5 to clear_refs resets VmHWM)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak_rss_mb() -> float:
    """VmHWM: the peak resident set since the last reset (or since start)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def polars_query(frame, as_of):
    """The core aggregates in Polars (lazy, one group_by)."""
    import pandas as pd
    import polars as pl

    from features.contract.schema import CHANNELS

    t = pd.Timestamp(as_of, tz="UTC").to_pydatetime()
    ts, et = pl.col("ts"), pl.col("event_type")
    purchase = et == "purchase"
    last30 = ts >= t - pd.Timedelta(days=30)
    n_purchases = purchase.sum()
    aggs = [
        ((pl.lit(t) - ts.filter(purchase).max()).dt.total_seconds() / 86400).alias(
            "days_since_last_purchase"
        ),
        (purchase & last30).sum().alias("purchases_30d"),
        pl.col("amount").filter(purchase & last30).sum().alias("spend_30d"),
        pl.col("amount").filter(purchase).sum().alias("spend_365d"),
        (et == "store_visit").sum().alias("store_visits_365d"),
        pl.col("store_id")
        .filter(pl.col("channel") == "store")
        .drop_nulls()
        .n_unique()
        .alias("distinct_stores"),
        *(
            ((purchase & (pl.col("channel") == c)).sum() / n_purchases).alias(f"share_{c}")
            for c in CHANNELS
        ),
    ]
    span = (ts < t) & (ts >= t - pd.Timedelta(days=365))
    return frame.lazy().filter(span).group_by("customer_id").agg(aggs).collect()


def duckdb_query(frame, as_of):
    """The same aggregates in DuckDB SQL over the pandas frame (no copy)."""
    import duckdb

    from features.contract.schema import CHANNELS

    t = f"TIMESTAMPTZ '{as_of} 00:00:00+00'"
    shares = ",\n".join(
        f"count(*) FILTER (WHERE event_type = 'purchase' AND channel = '{c}')"
        f" / count(*) FILTER (WHERE event_type = 'purchase') AS share_{c}"
        for c in CHANNELS
    )
    sql = f"""
    SELECT customer_id,
      epoch({t} - max(ts) FILTER (WHERE event_type = 'purchase')) / 86400
        AS days_since_last_purchase,
      count(*) FILTER (WHERE event_type = 'purchase' AND ts >= {t} - INTERVAL 30 DAY)
        AS purchases_30d,
      sum(amount) FILTER (WHERE event_type = 'purchase' AND ts >= {t} - INTERVAL 30 DAY)
        AS spend_30d,
      sum(amount) FILTER (WHERE event_type = 'purchase') AS spend_365d,
      count(*) FILTER (WHERE event_type = 'store_visit') AS store_visits_365d,
      count(DISTINCT store_id) FILTER (WHERE channel = 'store') AS distinct_stores,
      {shares}
    FROM events
    WHERE ts < {t} AND ts >= {t} - INTERVAL 365 DAY
    GROUP BY customer_id"""
    con = duckdb.connect()
    con.register("events", frame)
    return con.sql(sql).to_arrow_table()


def _threads() -> dict:
    import duckdb
    import numpy  # noqa: F401  (loads the BLAS that threadpoolctl reports)
    import polars as pl
    from threadpoolctl import threadpool_info

    return {
        "cpus": os.cpu_count(),
        "polars_threads": pl.thread_pool_size(),
        "POLARS_MAX_THREADS": os.environ.get("POLARS_MAX_THREADS", "(unset: default)"),
        "duckdb_threads": duckdb.sql("SELECT current_setting('threads')").fetchall()[0][0],
        "numpy_blas": [
            {k: i.get(k) for k in ("internal_api", "num_threads", "architecture")}
            for i in threadpool_info()
        ],
        "ours": "numpy; string ids encoded on two threads (features.encode)",
    }


def _child(args: argparse.Namespace) -> None:
    import pandas as pd

    from features.contract.schema import EVENTS, as_contract_frame

    data = Path(args.data)
    events = as_contract_frame(pd.read_parquet(data / "events.parquet"), EVENTS)
    customers = pd.read_parquet(data / "customers.parquet")
    events_mb = events.memory_usage(deep=True).sum() / 2**20
    extra: dict = {"events": len(events), "events_mb": events_mb}
    if args.contender == "polars":
        import polars as pl

        t0 = time.perf_counter()
        frame = pl.from_pandas(events)
        extra["convert_seconds"] = time.perf_counter() - t0
        del events  # Polars works on its own copy: do not count the pandas one against it
        run = lambda: polars_query(frame, AS_OF)  # noqa: E731
    elif args.contender == "duckdb":
        run = lambda: duckdb_query(events, AS_OF)  # noqa: E731
    else:
        from features.customer_features import build_customer_features

        run = lambda: build_customer_features(events, customers, AS_OF)  # noqa: E731
    gc.collect()
    import pyarrow as pa

    pa.default_memory_pool().release_unused()  # what the Parquet read left behind
    extra["rss_before_mb"] = _current_rss_mb()
    extra["peak_is_of_the_run"] = _reset_peak_rss()
    t0 = time.perf_counter()
    out = run()
    seconds = time.perf_counter() - t0
    extra["run_peak_rss_mb"] = _peak_rss_mb()
    extra["rows"] = len(out)
    extra["columns"] = out.shape[1]
    child_report(seconds, **extra)


def _generate(n_events: int, n_customers: int, folder: Path) -> None:
    from event_log import make_customers, make_events

    folder.mkdir(parents=True, exist_ok=True)
    make_events(n_events, n_customers).to_parquet(folder / "events.parquet")
    make_customers(n_customers).to_parquet(folder / "customers.parquet")


def _measure(folder: Path, repeat: int) -> dict:
    """Interleaved fresh-process runs of every contender; medians per contender."""
    script = Path(__file__)
    runs: dict[str, list[dict]] = {c: [] for c in CONTENDERS}
    for _ in range(repeat):
        for contender in CONTENDERS:
            runs[contender].append(
                run_child(script, [f"--contender={contender}", f"--data={folder}"])
            )
    out = {}
    for contender, rs in runs.items():
        out[contender] = {
            "seconds": statistics.median(r["seconds"] for r in rs),
            "peak_rss_mb": statistics.median(r["run_peak_rss_mb"] for r in rs),
            "rss_before_mb": statistics.median(r["rss_before_mb"] for r in rs),
            "added_mb": statistics.median(r["run_peak_rss_mb"] - r["rss_before_mb"] for r in rs),
            "runs": rs,
        }
    first = runs["ours"][0]
    out["events"] = first["events"]
    out["events_mb"] = first["events_mb"]
    out["feature_columns"] = first["columns"]
    faster = min(out["polars"]["seconds"], out["duckdb"]["seconds"])
    out["ratio_ours_to_faster_reference"] = out["ours"]["seconds"] / faster
    return out


def _table(result: dict, repeat: int) -> None:
    n, mb = result["events"], result["events_mb"]
    print(f"\n{n:,} events, {mb:,.0f} MB in memory (median of {repeat} fresh-process runs)")
    print(
        f"{'contender':<10}{'seconds':>9}{'events/s':>14}{'peak RSS MB':>13}"
        f"{'x events':>10}{'added MB':>10}"
    )
    for c in CONTENDERS:
        r = result[c]
        print(
            f"{c:<10}{r['seconds']:>9.2f}{n / r['seconds']:>14,.0f}"
            f"{r['peak_rss_mb']:>13,.0f}{r['peak_rss_mb'] / mb:>10.2f}{r['added_mb']:>10,.0f}"
        )
    conv = statistics.median(r["convert_seconds"] for r in result["polars"]["runs"])
    print(f"(pandas -> polars conversion, not counted above: {conv:.2f} s)")
    print(
        f"ours / faster reference = {result['ratio_ours_to_faster_reference']:.2f}; "
        f"ours computes {result['feature_columns']} columns, the references 15"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--scaling",
        default="1000000,10000000,30000000",
        help="event counts for the scaling run (customers = events / 10); '' to skip",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--contender", default="ours", help=argparse.SUPPRESS)
    parser.add_argument("--data", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args)
        return

    threads = _threads()
    print("threads:", json.dumps(threads))
    workdir = Path(tempfile.mkdtemp(prefix="omni-bench-features-"))
    try:
        main_dir = workdir / f"main-{args.events}"
        _generate(args.events, args.customers, main_dir)
        result = _measure(main_dir, args.repeat)
        _table(result, args.repeat)
        shutil.rmtree(main_dir, ignore_errors=True)
        scaling = []
        for n in [int(x) for x in args.scaling.split(",") if x]:
            folder = workdir / f"scale-{n}"
            _generate(n, max(n // 10, 10), folder)
            r = _measure(folder, 1)
            shutil.rmtree(folder, ignore_errors=True)
            scaling.append(r)
        if scaling:
            print("\nscaling (one run each; customers = events / 10), seconds:")
            print(f"{'events':>12}" + "".join(f"{c:>10}" for c in CONTENDERS) + f"{'ours/ref':>10}")
            for r in scaling:
                cells = "".join(f"{r[c]['seconds']:>10.2f}" for c in CONTENDERS)
                print(f"{r['events']:>12,}{cells}{r['ratio_ours_to_faster_reference']:>10.2f}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    path = save(
        "features",
        {
            "as_of": AS_OF,
            "threads": threads,
            "main": {"customers": args.customers, "repeat": args.repeat, **result},
            "scaling": scaling,
        },
    )
    print(f"results: {path}")


if __name__ == "__main__":
    main()
