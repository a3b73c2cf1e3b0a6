"""Batch scoring on Spark: the local scorer's pandas code, run per bucket of customers.

The driver takes the online snapshot as of the cutoff (the same one ``omni score``
uses: champions from the MLflow registry, the recommender moved to the cutoff; ALS needs
the whole purchase matrix, so that part runs on the driver). Spark then reads the
events store, sends each customer's events and customers row to one bucket
(:func:`features.spark.run_per_customer`), and every bucket runs the unchanged code:
``build_customer_features`` for its customers, then :class:`serving.scoring.Scorer`
with the snapshot's models. Customer features are separable by customer, and the
models are shared, so every row equals the local engine's within float rounding (a test
checks it with the tolerance of ``tests/compare_scores.py``).

Executors read the models from the snapshot folder (once per Python worker): on a
cluster, the data home must be on a path every node sees (as for the feature build).
"""

from __future__ import annotations

import functools
import pickle
import time
from pathlib import Path

import numpy as np
import pandas as pd

from features.settings import Settings
from serving.batch import BatchResult

KIND = "_row"


@functools.lru_cache(maxsize=2)
def _models(models_pkl: str) -> dict:
    """The snapshot's fitted models, loaded once per executor process."""
    with open(models_pkl, "rb") as f:
        return pickle.load(f)


def score_bucket(
    events: pd.DataFrame,
    dims: dict,
    as_of: pd.Timestamp,
    k: int,
    models_pkl: str,
    manifest: dict,
) -> pd.DataFrame:
    """Features and scores of one bucket's customers, as one long frame: customer rows
    and recommendation rows, told apart by ``_row``."""
    from features.customer_features import build_customer_features
    from serving.online import OnlineSnapshot
    from serving.scoring import Scorer

    features = build_customer_features(events, dims.get("customers"), as_of)
    snap = OnlineSnapshot(Path(models_pkl).parent, as_of, features, _models(models_pkl), manifest)
    customers, recs = Scorer(snap, num_threads=1, precompute_candidates=False).score_frames(
        list(features.index.astype(str)), k=k
    )
    return _long(customers, recs)


def _long(customers: pd.DataFrame, recs: pd.DataFrame) -> pd.DataFrame:
    """One frame with both tables' columns (what a Spark pandas function can return)."""
    recs = recs.assign(rank=recs["rank"].astype("float64"))
    out = pd.concat(
        [customers.assign(**{KIND: "customer"}), recs.assign(**{KIND: "item"})],
        ignore_index=True,
    )
    for column in ("known", "cold_start"):
        out[column] = out[column].astype("float64")  # NaN on item rows
    return out


def _split(long: pd.DataFrame, customer_cols: list[str], rec_cols: list[str]):
    """Back to the local engine's two tables, sorted the same way."""
    cust = long[long[KIND] == "customer"][customer_cols].copy()
    for column in ("known", "cold_start"):
        cust[column] = cust[column].astype(bool)
    recs = long[long[KIND] == "item"][rec_cols].copy()
    recs["rank"] = recs["rank"].astype(np.int16)
    recs["score"] = recs["score"].astype(np.float32)
    cust = cust.sort_values("customer_id", kind="stable").reset_index(drop=True)
    recs = recs.sort_values(["customer_id", "rank"], kind="stable").reset_index(drop=True)
    return cust, recs


def run_batch_spark(
    settings: Settings,
    out: Path,
    as_of: pd.Timestamp | None = None,
    k: int = 10,
    only_changed: bool = False,
    master: str | None = None,
    say=print,
) -> BatchResult:
    """:func:`serving.batch.run_batch` on Spark (same output folder, same rows)."""
    import warnings

    from features.registry import DEFAULT_WINDOWS
    from features.spark import (
        collect,
        read_events,
        read_table,
        require_pyspark,
        schema_of,
        spark_session,
    )
    from serving.batch import finish, snapshot_for
    from serving.online import load_snapshot

    if only_changed:
        raise ValueError("--only-changed is not supported with --engine spark yet")
    require_pyspark()
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    snapshot = load_snapshot(snapshot_for(settings, as_of, say))
    if len(snapshot.models) < 3:
        raise ValueError(
            f"--engine spark needs all three models; snapshot {snapshot.path.name} holds "
            f"{', '.join(snapshot.models)}: use --engine local"
        )
    seconds["snapshot"] = time.perf_counter() - t0
    models_pkl = str((snapshot.path / "models.pkl").resolve())
    t = snapshot.as_of
    lookback = max(DEFAULT_WINDOWS)
    fn = functools.partial(
        score_bucket, as_of=t, k=k, models_pkl=models_pkl, manifest=snapshot.manifest
    )
    warnings.filterwarnings("ignore", "PySpark does not yet fully support pandas")
    t0 = time.perf_counter()
    spark = spark_session(master or settings.spark_master, app_name="omni score")
    say(f"Spark master {spark.sparkContext.master}, {spark.sparkContext.defaultParallelism} cores")
    try:
        events = read_events(
            spark, settings.store_dir, start=t - pd.Timedelta(days=lookback), end=t
        )
        customers = read_table(spark, settings.store_dir, "customers")
        n_events = events.count()
        example = _example(snapshot, k)
        rows = _run(events, customers, fn, schema_of(example, index=False), spark, n_events)
        long = collect(rows)
    finally:
        spark.stop()
    seconds["spark"] = time.perf_counter() - t0
    cust, recs = _split(long, _customer_columns(example), _rec_columns())
    cust["scored_as_of"] = t
    return finish(
        out, snapshot, cust, recs, k, len(cust), False, seconds, "spark", settings.keep_scores
    )


def _run(events, customers, fn, schema, spark, n_events: int):
    from features.spark import default_buckets, run_per_customer

    return run_per_customer(
        events, fn, schema, customers, n_buckets=default_buckets(spark, n_events)
    )


def _example(snapshot, k: int) -> pd.DataFrame:
    """An output frame of the right columns and dtypes (scores a few known customers)."""
    from serving.scoring import Scorer

    scorer = Scorer(snapshot, precompute_candidates=False)
    customers, recs = scorer.score_frames(list(scorer.ids[:3]), k=k)
    return _long(customers, recs)


def _customer_columns(example: pd.DataFrame) -> list[str]:
    rec_only = set(_rec_columns()) - {"customer_id"}
    return [c for c in example.columns if c not in rec_only and c != KIND]


def _rec_columns() -> list[str]:
    return ["customer_id", "rank", "product_id", "score", "reason"]
