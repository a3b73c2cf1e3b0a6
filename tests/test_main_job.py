"""End to end through the real CLI: the main job and the Complete Journey load."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from features.store import read_events, read_table

pytestmark = pytest.mark.slow


def _omni(*args: str, home, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMNI_HOME": str(home), "COLUMNS": "120"}
    return subprocess.run(
        [sys.executable, "-m", "serving.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )


def test_main_job_on_the_embedded_default(tmp_path):
    res = _omni("run", "--customers", "800", home=tmp_path, timeout=900)
    assert res.returncode == 0, res.stderr
    assert "events per channel" in res.stdout
    assert "identity resolution vs ground truth: pairwise precision" in res.stdout
    assert "churn v1 -> @champion" in res.stdout
    assert "next_best_channel v1 -> @champion" in res.stdout
    assert "recommender v1 -> @champion" in res.stdout
    listed = _omni("models", "list", home=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "churn" in listed.stdout and "champion" in listed.stdout
    events = read_events(tmp_path / "store")
    assert events["customer_id"].notna().all()
    assert set(events["channel"].unique()) >= {"web", "app", "store", "email"}
    assert (tmp_path / "raw" / "synthetic" / "truth" / "customers.parquet").exists()


def test_complete_journey_loads_every_household(tmp_path):
    res = _omni("data", "complete-journey", home=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "2,469 customers with events" in res.stdout
    store = tmp_path / "store"
    assert read_table(store, "customers")["customer_id"].nunique() == 2469
    # A time range reads only its months: 2017-03 holds purchases, visits and mailers.
    march = read_events(store, start="2017-03-01", end="2017-04-01")
    assert march["ts"].dt.month.eq(3).all() and len(march) > 100_000
