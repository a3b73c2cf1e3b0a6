"""Training on the data a retailer has (issue 16), through the real CLI and MLflow store:
short histories train with cutoffs chosen from them, ``--test-cutoff`` / ``--as-of``
reproduce a split and are MLflow params, a one-channel log trains churn and
recommendations (next best channel skipped with a note) and scores with the champions
that exist, or the subset ``--models`` names."""

from __future__ import annotations

import json

import mlflow
import pandas as pd
import pytest
from cli_helpers import omni

from features.sources.base import write_source
from features.sources.synthetic import generate
from training.tracking import experiment_name

pytestmark = pytest.mark.slow

SMALL = ("--lookback", "60", "--horizon", "30", "--cutoffs", "2")


def _ok(res) -> str:
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout + res.stderr


def _runs(home, experiment: str) -> pd.DataFrame:
    mlflow.set_tracking_uri(f"sqlite:///{home / 'mlflow.db'}")
    names = [experiment_name(experiment)]
    return mlflow.search_runs(experiment_names=names, order_by=["start_time ASC"])


@pytest.fixture(scope="module")
def short_home(tmp_path_factory):
    """Eight months of synthetic events: the defaults used to need 360 days."""
    home = tmp_path_factory.mktemp("short") / "home"
    _ok(omni("data", "synth", "--customers", "700", "--days", "240", "--seed", "4", home=home))
    return home


def test_eight_months_train_with_cutoffs_chosen_from_the_history(short_home):
    # default lookback 90 + horizon 60: 1 training cutoff fits in 240 days (90 + 3 * 60 = 270
    # would be the minimum with the default horizon: refused, naming it)
    refused = omni("train", "churn", home=short_home)
    assert refused.returncode == 2
    assert "need at least 270 days of events" in refused.stderr
    assert "Traceback" not in refused.stderr
    out = _ok(omni("train", "churn", "--horizon", "45", home=short_home))
    assert "cutoffs chosen from the history" in out
    run = _runs(short_home, "churn").iloc[-1]
    assert len(run["params.cutoff_train_cutoffs"].split(",")) < 4


def test_test_cutoff_reproduces_a_split_and_is_logged(short_home):
    # issue 16: the same --test-cutoff on all the data, and --as-of at the end of its test
    # window (later events not read), give the same cutoffs and the same test metrics
    _ok(omni("train", "churn", *SMALL, "--test-cutoff", "2025-11-15", home=short_home))
    _ok(omni("train", "churn", *SMALL, "--as-of", "2025-12-15", home=short_home))
    a, b = _runs(short_home, "churn").iloc[-2:].to_dict("records")
    for key in ("cutoff_test_cutoff", "cutoff_valid_cutoff", "cutoff_train_cutoffs"):
        assert a[f"params.{key}"] == b[f"params.{key}"], key
    assert a["params.cutoff_test_cutoff"] == "2025-11-15"
    assert a["params.cutoff_as_of"] == "2026-01-01" and b["params.cutoff_as_of"] == "2025-12-15"
    assert a["metrics.test_average_precision"] == b["metrics.test_average_precision"]
    late = omni("train", "churn", *SMALL, "--test-cutoff", "2025-12-20", home=short_home)
    assert late.returncode == 2 and "--test-cutoff 2025-12-20" in late.stderr


def test_recs_test_window_is_chosen_printed_and_the_model_moved(short_home):
    out = _ok(omni("train", "recs", "--test-cutoff", "2025-11-01", home=short_home))
    assert "test window 2025-11-01 .. 2025-11-14 (ISO weeks 2025-W44 .. 2025-W46)" in out
    assert "moved to 2026-01-01" in out
    run = _runs(short_home, "recommender").iloc[-1]
    assert run["params.cutoff_test_cutoff"] == "2025-11-01"
    assert run["params.cutoff_as_of"] == "2026-01-01"


@pytest.fixture(scope="module")
def web_only_home(tmp_path_factory):
    """A log with one channel (web): views, carts and purchases, no stores."""
    root = tmp_path_factory.mktemp("web")
    data = generate(n_customers=700, days=300, seed=6)
    data.events = data.events[data.events["channel"] == "web"].reset_index(drop=True)
    write_source(data, root / "files")
    home = root / "home"
    _ok(omni("data", "load", str(root / "files"), home=home))
    return home


def test_one_channel_trains_churn_and_recs_and_scores(web_only_home):
    home = web_only_home
    out = _ok(omni("train", "all", *SMALL, home=home))
    assert "skipped next best channel: every event is on one channel ('web')" in out
    alone = omni("train", "channel", *SMALL, home=home)
    assert alone.returncode == 2 and "at least two channels" in alone.stderr
    out = _ok(omni("score", home=home))
    assert "churn v1, recommender v1" in out
    scores = home / "scores" / "latest"
    customers = pd.read_parquet(scores / "customers.parquet")
    assert "churn_probability" in customers and "best_channel" not in customers
    assert len(pd.read_parquet(scores / "recommendations.parquet")) > 0
    manifest = json.loads((scores / "manifest.json").read_text())
    assert set(manifest["model_versions"]) == {"churn", "recommender"}

    _ok(omni("snapshot", "build", "--models", "churn", home=home))
    latest = (home / "online" / "LATEST").read_text().strip()
    built = json.loads((home / "online" / latest / "manifest.json").read_text())
    assert set(built["models"]) == {"churn"}
    _ok(omni("score", "--models", "churn", home=home))
    assert pd.read_parquet(scores / "recommendations.parquet").empty
    assert pd.read_parquet(scores / "customers.parquet")["churn_probability"].notna().any()
    for models, message in [
        ("next_best_channel", "no @champion for next_best_channel"),
        ("churn,nope", "--models churn,nope: choose among"),
    ]:
        res = omni("score", "--models", models, home=home)
        assert res.returncode == 2 and message in res.stderr, res.stderr
        assert "Traceback" not in res.stderr
