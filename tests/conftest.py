"""Shared fixtures: an isolated data home per test (with a fresh MLflow store when asked),
small contract frames, and a tiny real model to log and register."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from cli_helpers import omni

from features.settings import Settings, get_settings


def pytest_collection_modifyitems(config, items) -> None:
    """Tests on the session's trained home (an `omni run`: about a minute) are slow tests
    wherever they are, so that the fast tier (`make test-fast`) never trains."""
    for item in items:
        if "trained_home" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def settings(tmp_path) -> Settings:
    """Settings whose home (store, MLflow SQLite) lives in the test's tmp dir."""
    return get_settings({"OMNI_HOME": str(tmp_path / "home")})


@pytest.fixture
def raw_events() -> pd.DataFrame:
    """Five good events as a user's CSV would hold them (all text)."""
    return pd.DataFrame(
        {
            "customer_id": ["c1", "c1", "c2", None, "c3"],
            "ts": [
                "2025-01-03T10:00:00Z",
                "2025-01-05 12:30:00",
                "2025-02-01",
                "2025-02-10T08:00:00+01:00",
                "2025-03-01",
            ],
            "channel": ["web", "store", "email", "app", "sms"],
            "event_type": ["view", "purchase", "open", "view", "click"],
            "product_id": ["p1", "p2", None, "p1", None],
            "quantity": [None, "2", None, None, None],
            "amount": [None, "9.5", None, None, None],
            "device_id": [None, None, None, "d9", None],
        }
    )


@pytest.fixture(scope="session")
def _mlflow_db_template(tmp_path_factory) -> Path:
    """An empty MLflow SQLite database with its tables: creating one takes seconds, copying not."""
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("mlflow_template") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def mlflow_settings(settings: Settings, _mlflow_db_template: Path) -> Settings:
    """Settings whose MLflow store is a fresh local SQLite file in the test's data home."""
    settings.home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_mlflow_db_template, settings.home / "mlflow.db")
    return settings


@pytest.fixture(scope="session")
def tiny_model():
    """A LogisticRegression fitted on 3 features (planted: y = f1 > 0) wrapped as an MLflow
    pyfunc model, and 40 rows of its input."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from training.model_io import EstimatorModel

    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.normal(size=(40, 3)), columns=["f1", "f2", "f3"])
    clf = LogisticRegression().fit(x, (x["f1"] > 0).astype(int))
    return EstimatorModel(clf, ["f1", "f2", "f3"]), x


@pytest.fixture(autouse=True)
def _isolated_tracking_uri():
    """mlflow.set_tracking_uri() also sets MLFLOW_TRACKING_URI in os.environ; without this a
    test's store would leak into later tests and into the CLI subprocesses they start."""
    import os

    saved = os.environ.pop("MLFLOW_TRACKING_URI", None)
    yield
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    if saved is not None:
        os.environ["MLFLOW_TRACKING_URI"] = saved


@pytest.fixture(scope="session")
def trained_home(tmp_path_factory) -> Path:
    """A data home after the main job (`omni run`) on 800 synthetic customers: three
    @champions and batch scores (its output is kept in ``../omni_run.txt``), then an online
    snapshot with the recommender left at its training cutoff, so that its lists equal the
    logged model's. Built once per session: it takes about a minute."""
    home = tmp_path_factory.mktemp("trained") / "home"
    run = omni("run", "--customers", "800", home=home, timeout=1200)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    (home.parent / "omni_run.txt").write_text(run.stdout)  # test_main_job reads it
    snap = omni("snapshot", "build", "--no-refresh-recommender", home=home)
    assert snap.returncode == 0, snap.stdout[-3000:] + snap.stderr[-3000:]
    return home


@pytest.fixture(scope="session")
def snapshot(trained_home):
    """The trained home's online snapshot, loaded."""
    from serving.online import latest_snapshot, load_snapshot

    return load_snapshot(latest_snapshot(get_settings({"OMNI_HOME": str(trained_home)})))


@pytest.fixture
def redis_server(tmp_path):
    """A fresh redis-server on a free port (skipped where the Debian package is missing)."""
    from redis_server import REDIS, RedisServer

    if not Path(REDIS).exists():
        pytest.skip("redis-server not installed (Debian package redis-server; .ci/run installs it)")
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()
