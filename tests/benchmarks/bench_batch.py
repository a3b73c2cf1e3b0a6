"""Benchmark: batch scoring of every customer against the raw cost of the model calls.

    python tests/benchmarks/bench_batch.py [--customers 1000000] [--days 60] [--repeat 3]

Set-up, once per ``--home`` (default bench_results/batch_home; the models are trained on
20,000 synthetic customers x 365 days, then the store is replaced by ``--customers``
synthetic customers x ``--days`` days and a batch snapshot is built: features of every
customer as of the end, the recommender moved there). Then, interleaved in fresh
processes, ``--repeat`` times each:

- ours: ``serving.batch.run_batch`` end to end on the snapshot: load it, churn + channel
  (after consent) + top-10 recommendations with reasons and rules for every customer,
  Parquet written;
- raw: the model calls alone on the same rows: LightGBM ``predict`` of the churn and
  channel boosters on the feature matrix, and implicit's batch ``recommend(N=10)`` with
  the same ALS factors (already-bought items filtered) for every customer.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import RESULTS_DIR, child_report, load_note, omni, run_child, save

TRAIN_CUSTOMERS = 20_000
SNAPSHOT = 2
"""Version of the prepared snapshot (an older home's is rebuilt). A snapshot of an older
version that still carries compiled forests is read as it is: its extra files are
unused."""


def prepare(home: Path, customers: int, days: int) -> dict:
    """Champions trained on a small store, then the scoring store and its snapshot (each
    step redone only when what it made is missing or out of date)."""
    marker = home / "bench_batch.json"
    wanted = {"customers": customers, "days": days}
    info = json.loads(marker.read_text()) if marker.exists() else {}
    if info.get("data") != wanted:
        if not (home / "mlflow.db").exists():
            print(f"training the models in {home} (first run only)", flush=True)
            omni(home, "data", "synth", "--customers", str(TRAIN_CUSTOMERS), "--days", "365")
            omni(home, "train", "all")
        print(f"scoring data: {customers:,} customers x {days} days", flush=True)
        omni(
            home, "data", "synth", "--customers", str(customers), "--days", str(days), "--seed", "7"
        )
        info = {"data": wanted}
    if info.get("snapshot") != SNAPSHOT:
        print("building the batch snapshot (features, recommender moved)")
        t0 = time.perf_counter()
        omni(home, "snapshot", "build", "--no-serving")
        info.update(snapshot=SNAPSHOT, snapshot_seconds=time.perf_counter() - t0)
        marker.write_text(json.dumps(info))
    return info


def child_ours(home: Path) -> None:
    from features.settings import get_settings
    from serving.batch import run_batch

    settings = get_settings({"OMNI_HOME": str(home)})
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        result = run_batch(settings, Path(tmp) / "scores", say=lambda _m: None)
        seconds = time.perf_counter() - t0
    child_report(
        seconds,
        customers=result.customers,
        cold_start=result.cold_start,
        stages={k: round(v, 2) for k, v in result.seconds.items()},
    )


def child_raw(home: Path) -> None:
    import numpy as np
    import scipy.sparse as sp
    from implicit.cpu.als import AlternatingLeastSquares

    from features.settings import get_settings
    from serving.online import latest_snapshot, load_snapshot
    from training.customer_models.classifiers import model_matrix

    snap = load_snapshot(latest_snapshot(get_settings({"OMNI_HOME": str(home)})))
    churn, channel = snap.models["churn"], snap.models["next_best_channel"]
    rec = snap.models["recommender"]
    X_churn = model_matrix(snap.features, churn.features_)
    X_channel = model_matrix(snap.features, channel.features_)
    s = rec.state_
    n_users, n_items = s.user_factors.shape[0], s.item_factors.shape[0]
    bought = s.bought
    rows, cols = bought.keys // bought.n_cols, bought.keys % bought.n_cols
    user_items = sp.csr_matrix(
        (np.ones(len(rows), np.float32), (rows, cols)), shape=(n_users, n_items)
    )
    als = AlternatingLeastSquares(factors=s.user_factors.shape[1])
    als.user_factors, als.item_factors = s.user_factors, s.item_factors
    users = np.arange(n_users)
    stages = {}
    t0 = time.perf_counter()
    churn.booster_.booster_.predict(X_churn)
    stages["churn_predict"] = time.perf_counter() - t0
    channel.booster_.booster_.predict(X_channel)
    stages["channel_predict"] = time.perf_counter() - t0 - sum(stages.values())
    als.recommend(users, user_items, N=10, filter_already_liked_items=True)
    stages["implicit_recommend"] = time.perf_counter() - t0 - sum(stages.values())
    child_report(
        time.perf_counter() - t0,
        customers=len(X_churn),
        als_users=n_users,
        stages={k: round(v, 2) for k, v in stages.items()},
    )


def batch_home_arguments(doc: str, contenders: tuple[str, ...]) -> argparse.Namespace:
    """The options of a benchmark on this home (bench_journeys.py has them too)."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--home", type=Path, default=RESULTS_DIR / "batch_home")
    ap.add_argument("--customers", type=int, default=1_000_000)
    ap.add_argument("--days", type=int, default=60)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--contender", choices=contenders, help=argparse.SUPPRESS)
    return ap.parse_args()


def main() -> None:
    args = batch_home_arguments(__doc__, ("ours", "raw"))
    home = args.home.resolve()
    if args.child:
        (child_ours if args.contender == "ours" else child_raw)(home)
        return
    info = prepare(home, args.customers, args.days)
    runs: dict[str, list[dict]] = {"ours": [], "raw": []}
    for i in range(args.repeat):
        for name in runs:
            runs[name].append(
                run_child(Path(__file__), ["--contender", name, "--home", str(home)], 3600)
            )
        print(
            f"  round {i + 1}/{args.repeat}: ours {runs['ours'][-1]['seconds']:.1f} s, "
            f"raw {runs['raw'][-1]['seconds']:.1f} s",
            flush=True,
        )
    ours = statistics.median(r["seconds"] for r in runs["ours"])
    raw = statistics.median(r["seconds"] for r in runs["raw"])
    n = runs["ours"][0]["customers"]
    print(
        f"\n{n:,} customers ({runs['ours'][0]['cold_start']:,} cold start), medians of "
        f"{args.repeat} ({load_note()}):\n"
        f"  ours, end to end:        {ours:7.1f} s  {n / ours:9,.0f} customers/s  "
        f"peak {statistics.median(r['peak_rss_mb'] for r in runs['ours']):,.0f} MB\n"
        f"  raw model calls only:    {raw:7.1f} s  {n / raw:9,.0f} customers/s\n"
        f"  ours / raw = {ours / raw:.2f}x; goal: 1M customers in under 120 s\n"
        f"  stages (last run): {runs['ours'][-1]['stages']}; raw: {runs['raw'][-1]['stages']}\n"
        f"  snapshot build (features of every customer, recommender moved): "
        f"{info['snapshot_seconds']:.0f} s, once"
    )
    save("batch", {"info": info, "ours_s": ours, "raw_s": raw, "customers": n, "runs": runs})


if __name__ == "__main__":
    main()
