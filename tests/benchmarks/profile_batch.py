"""Where batch scoring's time goes: ``run_batch`` once, with a timer around each stage.

    python tests/benchmarks/profile_batch.py --home /tmp/bb100k [--out /tmp/scores]

The home is one ``bench_batch.py --home`` prepared (models, scoring store, snapshot).
Each stage's function is wrapped in place for the run (nested stages are counted in
their parents too, so the lines do not add up); LightGBM predictions are split by
booster size. A profiling aid, run by hand: not a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import collections
import functools
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

SECONDS: collections.defaultdict[str, float] = collections.defaultdict(float)

STAGES: tuple[tuple[str, str, str], ...] = (
    # (module, attribute, label)
    ("serving.batch", "snapshot_for", "champion check (MLflow) / snapshot build"),
    ("serving.online", "load_snapshot", "load snapshot"),
    ("serving.batch", "write_output", "write Parquet"),
    ("serving.scoring.Scorer", "__init__", "Scorer set-up"),
    ("serving.scoring.Scorer", "churn", "churn"),
    ("serving.scoring.Scorer", "next_channel", "channel (after consent)"),
    ("serving.scoring.Scorer", "recommend", "recommendations, all of it"),
    ("serving.scoring.Scorer", "recommendation_frame", "recommendation frame"),
    ("training.recs.candidates", "personal", "personal candidates (ALS + buy again)"),
    ("training.recs.candidates", "top_n", "  ALS top-n"),
    ("training.recs.model", "contextual", "contextual candidates"),
    ("training.recs.model", "merge", "merge candidates"),
    ("training.recs.model", "feature_matrix", "ranker features"),
    ("training.recs.model", "popularity_rows", "cold start popularity"),
    ("training.recs.base", "_top_k", "top k per customer"),
)


def _timed(function, label: str):
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            SECONDS[label] += time.perf_counter() - t0

    return wrapper


def _wrap_stages() -> None:
    """Put a timer around every stage of :data:`STAGES` and LightGBM's predict."""
    import importlib

    import lightgbm as lgb

    for path, name, label in STAGES:
        try:
            owner = importlib.import_module(path)
        except ModuleNotFoundError:  # a class: module.Class
            module, cls = path.rsplit(".", 1)
            owner = getattr(importlib.import_module(module), cls)
        setattr(owner, name, _timed(getattr(owner, name), label))
    predict = lgb.Booster.predict

    def timed_predict(self, data, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            return predict(self, data, *args, **kwargs)
        finally:
            SECONDS[f"  LightGBM predict, {self.num_trees()} trees"] += time.perf_counter() - t0

    lgb.Booster.predict = timed_predict


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--home", type=Path, required=True)
    ap.add_argument("--out", type=Path, help="keep the output here (default: a temp folder)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    from features.settings import get_settings
    from serving import batch

    SECONDS["imports before run_batch"] = time.perf_counter() - t0
    _wrap_stages()
    settings = get_settings({"OMNI_HOME": str(args.home.resolve())})
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp) / "scores"
        t0 = time.perf_counter()
        result = batch.run_batch(settings, out, say=lambda _m: None)
        SECONDS["run_batch, end to end"] = time.perf_counter() - t0
    print(f"{result.customers:,} customers ({result.cold_start:,} cold start)")
    for label, seconds in sorted(SECONDS.items(), key=lambda kv: -kv[1]):
        print(f"  {label:45s} {seconds:7.2f} s")


if __name__ == "__main__":
    main()
