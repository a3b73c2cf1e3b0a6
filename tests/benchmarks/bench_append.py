"""Benchmark: `omni data load --append` of the next ~10% of a log onto a store of the rest
(event ids, the stored identity graph, rewriting parts whose customers change), against a
replace-mode load of the same store. Medians of fresh-process runs.

    python tests/benchmarks/bench_append.py --customers 10000 --days 365 --repeat 3
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
    from features.store.ingest import ingest

    work = Path(args.workdir)
    if args.stage == "generate":
        from features.sources.base import SourceData, write_source
        from features.sources.synthetic import generate

        data = generate(n_customers=args.customers, days=args.days, seed=args.seed)
        cut = data.events["ts"].quantile(1 - args.share)
        early = data.events["ts"] < cut
        dims = {"customers": data.customers, "products": data.products, "stores": data.stores}
        write_source(SourceData(events=data.events[early], **dims), work / "base")
        write_source(SourceData(events=data.events[~early], **dims), work / "delta")
        child_report(0.0, base=int(early.sum()), delta=int((~early).sum()))
        return
    home = work / f"home-{time.time_ns()}"
    shutil.copytree(work / "store-home", home) if args.stage == "append" else None
    settings = get_settings({"OMNI_HOME": str(home)})
    source = work / ("delta" if args.stage == "append" else "base")
    t0 = time.perf_counter()
    result = ingest(source, settings, mode="append" if args.stage == "append" else "replace")
    seconds = time.perf_counter() - t0
    store = getattr(result, "store", None)  # None on code before issue 14
    extra = {}
    if store is not None:
        extra = {"restamped": store.n_restamped, "rewritten": store.n_parts_rewritten}
        extra["store_steps"] = store.seconds
    if args.stage == "prepare":
        shutil.move(home, work / "store-home")
    else:
        shutil.rmtree(home, ignore_errors=True)
    child_report(seconds, steps=result.seconds, **extra)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--share", type=float, default=0.1, help="share of events appended")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--stage", default="generate", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args)
        return

    workdir = Path(tempfile.mkdtemp(prefix="omni-bench-append-"))
    base = [
        f"--customers={args.customers}",
        f"--days={args.days}",
        f"--seed={args.seed}",
        f"--share={args.share}",
        f"--workdir={workdir}",
    ]
    script = Path(__file__)
    try:
        sizes = run_child(script, [*base, "--stage=generate"])
        load = run_child(script, [*base, "--stage=prepare"])
        append = median_of(
            [run_child(script, [*base, "--stage=append"]) for _ in range(args.repeat)]
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(
        f"\nstore of {sizes['base']:,} events, append of {sizes['delta']:,} "
        f"(median of {args.repeat} fresh-process runs)"
    )
    print(f"load of the store (replace, one run): {load['seconds']:.2f} s")
    print(f"append: {append['seconds']:.2f} s, peak RSS {append['peak_rss_mb']:,.0f} MB")
    first = append["runs"][0]
    print(
        "append breakdown (first run): "
        + ", ".join(f"{k} {v:.2f} s" for k, v in first["steps"].items())
    )
    if "store_steps" in first:
        steps = first["store_steps"].items()
        print("store write (first run): " + ", ".join(f"{k} {v:.2f} s" for k, v in steps))
    if "restamped" in first:
        print(
            f"stored events restamped: {first['restamped']:,} "
            f"({first['rewritten']} parts rewritten)"
        )
    path = save("append", {"sizes": sizes, "load": load, "append": append})
    print(f"results: {path}")


if __name__ == "__main__":
    main()
