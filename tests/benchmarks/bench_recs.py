"""Benchmark: recommender training time on Complete Journey and on ~10M synthetic events,
and the overhead of our ALS wrapper against calling implicit directly on the same matrix.

Training time = encoding the events (``History.from_frames``) + ``Recommender.fit`` (ALS
and candidates at every cutoff, ranker, serving snapshot), median of ``--repeat``
fresh-process runs. The ALS comparison fits the same BM25-weighted matrix with the same
hyperparameters, both under ``threadpool_limits(1, "blas")``, alternating, in one process.

    python tests/benchmarks/bench_recs.py --repeat 3
    python tests/benchmarks/bench_recs.py --sources cj      # Complete Journey only
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import child_report, median_of, run_child, save


def _load(source: str, workdir: Path):
    """(events, customers, products, stores) of a source."""
    import pandas as pd

    if source == "cj":
        from features.sources.complete_journey import load_complete_journey

        d = load_complete_journey()
        return d.events, d.customers, d.products, d.stores
    folder = workdir / "synthetic"
    return tuple(pd.read_parquet(folder / f"{t}.parquet") for t in _TABLES)


_TABLES = ("events", "customers", "products", "stores")


def _write_synthetic(workdir: Path, customers: int, days: int, seed: int) -> int:
    """Generate once; customer_id = the true person (training, not identity, is timed)."""
    from features.sources.synthetic import generate

    d = generate(n_customers=customers, days=days, seed=seed)
    d.events["customer_id"] = d.truth["event_person"]["person_id"].to_numpy()
    folder = workdir / "synthetic"
    folder.mkdir(parents=True, exist_ok=True)
    for name in _TABLES:
        getattr(d, name).to_parquet(folder / f"{name}.parquet", index=False)
    return len(d.events)


def _child_fit(args: argparse.Namespace) -> None:
    from training.recs.data import History
    from training.recs.model import Recommender

    events, customers, products, stores = _load(args.source, Path(args.workdir))
    t0 = time.perf_counter()
    history = History.from_frames(events, customers, products, stores)
    encode = time.perf_counter() - t0
    model = Recommender(random_state=0).fit(history)
    seconds = time.perf_counter() - t0
    child_report(
        seconds,
        events=len(events),
        encode_seconds=encode,
        fit_seconds=model.fit_seconds_,
        snapshot_seconds=model.state_.seconds,
        candidates_per_customer=model.fit_stats_["valid"]["candidates_per_customer"],
    )


def _child_als(args: argparse.Namespace) -> None:
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    from training.recs.als import ALSParams, fit_als
    from training.recs.data import History
    from training.recs.interactions import bm25, interaction_matrix
    from training.recs.model import default_cutoff

    events, customers, products, stores = _load(args.source, Path(args.workdir))
    history = History.from_frames(events, customers, products, stores)
    matrix = bm25(interaction_matrix(history, default_cutoff(history)))
    params = ALSParams()

    def direct() -> None:
        with threadpool_limits(1, "blas"):
            model = AlternatingLeastSquares(
                factors=params.factors,
                regularization=params.regularization,
                alpha=params.alpha,
                iterations=params.iterations,
                num_threads=params.num_threads,
                random_state=0,
            )
            model.fit(matrix, show_progress=False)

    def ours() -> None:
        fit_als(matrix, params, random_state=0)

    times: dict[str, list[float]] = {"direct": [], "wrapper": []}
    direct()  # warm-up (thread pools, page cache)
    for _ in range(args.repeat):
        for name, fn in (("direct", direct), ("wrapper", ours)):
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    child_report(
        med["wrapper"],
        direct=med["direct"],
        ratio=med["wrapper"] / med["direct"],
        runs=times,
        shape=list(matrix.shape),
        nnz=int(matrix.nnz),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--sources", default="cj,synthetic", help="comma-separated: cj, synthetic")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--stage", default="fit", help=argparse.SUPPRESS)
    parser.add_argument("--source", default="cj", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        (_child_fit if args.stage == "fit" else _child_als)(args)
        return

    workdir = Path(tempfile.mkdtemp(prefix="omni-bench-recs-"))
    script = Path(__file__)
    sources = [s for s in ("cj", "synthetic") if s in args.sources.split(",")]
    results: dict[str, dict] = {}
    try:
        if "synthetic" in sources:
            n = _write_synthetic(workdir, args.customers, args.days, args.seed)
            print(f"synthetic: {args.customers:,} customers x {args.days} days = {n:,} events")
        for source in sources:
            base = [f"--source={source}", f"--workdir={workdir}", f"--repeat={args.repeat}"]
            fits = [run_child(script, [*base, "--stage=fit"], 3600) for _ in range(args.repeat)]
            als = run_child(script, [*base, "--stage=als"], 3600)
            results[source] = {"fit": median_of(fits), "als": als}
            r = results[source]
            print(
                f"{source}: {fits[0]['events']:,} events, training "
                f"{r['fit']['seconds']:.1f} s (median of {args.repeat}; runs "
                + ", ".join(f"{x['seconds']:.1f}" for x in fits)
                + f"), peak RSS {r['fit']['peak_rss_mb']:,.0f} MB"
            )
            print(f"   fit breakdown (first run): {fits[0]['fit_seconds']}")
            print(
                f"   ALS on {als['shape'][0]:,} x {als['shape'][1]:,} (nnz {als['nnz']:,}): "
                f"implicit {als['direct']:.2f} s, wrapper {als['seconds']:.2f} s, "
                f"ratio {als['ratio']:.3f}"
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    path = save("recs_" + "_".join(sources), {"repeat": args.repeat, **results})
    print(f"results: {path}")


if __name__ == "__main__":
    main()
