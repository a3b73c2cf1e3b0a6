"""MLflow tracking for training jobs (issue 4): runs, metrics, artifacts, fingerprints, and
the pinned requirements that keep model logging fast."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from training.model_io import code_paths, log_python_model
from training.tracking import (
    dataset_fingerprint,
    log_dataset,
    log_evaluation,
    log_features,
    log_figure,
    log_json,
    log_metric_steps,
    new_figure,
    pip_requirements,
    sqlite_path,
    tracked_run,
    use_tracking,
)


def test_importing_the_training_modules_has_no_side_effects(tmp_path):
    code = (
        "import sys, training.tracking, training.model_registry, serving.cli.models;"
        "print(sorted({'mlflow', 'pandas', 'sklearn', 'matplotlib'} & set(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
    assert list(tmp_path.iterdir()) == []  # no mlruns/, no mlflow.db


def test_pip_requirements_pin_every_runtime_library():
    pins = pip_requirements()
    names = [p.split("==")[0] for p in pins]
    for lib in ("numpy", "pandas", "pyarrow", "scikit-learn", "lightgbm", "implicit", "mlflow"):
        assert lib in names
    for pin in pins:
        name, version = pin.split("==")
        assert version == metadata.version(name)


@pytest.fixture
def events() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    n = 500
    return pd.DataFrame(
        {
            "customer_id": pd.Series(rng.integers(0, 50, n)).map("c{}".format).astype("str"),
            "ts": pd.Timestamp("2025-01-01", tz="UTC")
            + pd.to_timedelta(rng.integers(0, 10**7, n), unit="s"),
            "channel": pd.Categorical(rng.choice(["web", "store", "email"], n)),
            "amount": np.where(rng.random(n) < 0.3, np.nan, rng.gamma(2, 10, n).round(2)),
        }
    )


def test_fingerprint_ignores_row_and_column_order(events):
    fp = dataset_fingerprint(events)
    assert len(fp) == 16
    assert dataset_fingerprint(events.sample(frac=1, random_state=3)) == fp
    assert dataset_fingerprint(events.iloc[:, ::-1].reset_index(drop=True)) == fp
    same_instants = events.assign(ts=events["ts"].dt.as_unit("ns"))
    assert dataset_fingerprint(same_instants) == fp
    same_values = events.assign(channel=events["channel"].astype("str"))
    assert dataset_fingerprint(same_values) == fp


def test_fingerprint_sees_any_change(events):
    fp = dataset_fingerprint(events)
    i = int(events["amount"].first_valid_index())
    changed = [
        events.assign(amount=events["amount"].where(events.index != i, events["amount"][i] + 0.01)),
        events.iloc[1:],
        pd.concat([events, events.iloc[:1]]),  # a duplicated event
        events.rename(columns={"amount": "revenue"}),
        events.drop(columns="amount"),
        events.assign(ts=events["ts"] + pd.Timedelta(microseconds=1)),
    ]
    fps = [dataset_fingerprint(c) for c in changed]
    assert fp not in fps and len(set(fps)) == len(fps)


def test_fingerprint_is_stable_across_processes_and_versions():
    # A frozen value: if a library upgrade changes it, holdouts recorded before the upgrade
    # stop matching (the gate then refuses to compare), so it should be a deliberate change.
    frame = pd.DataFrame(
        {
            "customer_id": ["c1", "c2", None],
            "ts": pd.to_datetime(
                ["2025-01-01 00:00", "2025-01-02 10:00", "2025-01-03 00:00"], utc=True
            ),
            "channel": pd.Categorical(["web", "store", "web"]),
            "quantity": pd.array([1, None, 3], dtype="Int64"),
            "amount": [9.5, np.nan, -2.0],
        }
    )
    assert dataset_fingerprint(frame) == "752e6853df7bb399"
    assert dataset_fingerprint(frame.iloc[:0]) != dataset_fingerprint(frame.iloc[:0, :2])


def test_metric_steps_are_one_history_per_column(mlflow_settings):
    # issue 19: metrics by k as step metrics; 1,200 values cross MLflow's batch limit of 1,000
    k = np.arange(1, 601)
    frame = pd.DataFrame({"k": k, "ndcg": 1 / k, "recall": k / 600})
    with tracked_run(mlflow_settings, "recommender"):
        names = log_metric_steps(frame, "k", prefix="test_", suffix="_at_k")
        run_id = mlflow.active_run().info.run_id
    assert names == ["test_ndcg_at_k", "test_recall_at_k"]
    client = mlflow.MlflowClient()
    for name, column in zip(names, ("ndcg", "recall"), strict=True):
        history = sorted(client.get_metric_history(run_id, name), key=lambda m: m.step)
        assert [m.step for m in history] == k.tolist()
        assert [m.value for m in history] == frame[column].tolist()
    assert client.get_run(run_id).data.metrics["test_ndcg_at_k"] == 1 / 600  # the last step


def test_tracked_run_logs_everything_a_job_needs(mlflow_settings, events):
    with tracked_run(mlflow_settings, "churn", params={"lr": 0.05}, tags={"source": "synthetic"}):
        logged = log_evaluation(
            {"test_roc_auc": np.float64(0.81)},
            {"recency": {"test_roc_auc": 0.74}, "frequency": {"test_roc_auc": 0.7}},
        )
        log_json({"when": pd.Timestamp("2025-10-01"), "k": np.arange(3)}, "eval/extra.json")
        fig, ax = new_figure(figsize=(3, 2))
        ax.plot([0, 1], [0, 1])
        log_figure(fig, "plots/roc.png")
        log_features(["recency", "frequency"], {"train": ["2025-06-01", "2025-08-01"]})
        fingerprint = log_dataset(events)
        run_id = mlflow.active_run().info.run_id
    assert logged == {
        "test_roc_auc": 0.81,
        "baseline_recency_test_roc_auc": 0.74,
        "baseline_frequency_test_roc_auc": 0.7,
    }
    run = mlflow.MlflowClient().get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.metrics == logged
    assert run.data.params["lr"] == "0.05"
    assert run.data.params["cutoff_train"] == "2025-06-01,2025-08-01"
    assert run.data.params["n_features"] == "2"
    assert run.data.params["events_rows"] == "500"
    assert run.data.tags["events_fingerprint"] == fingerprint
    assert run.data.tags["omni.job"] == "churn" and run.data.tags["source"] == "synthetic"
    exp = mlflow.MlflowClient().get_experiment(run.info.experiment_id)
    assert exp.name == "omni-churn"
    artifacts = Path(exp.artifact_location.removeprefix("file://"))
    assert artifacts.is_relative_to(mlflow_settings.home)  # beside the SQLite file, not ./mlruns
    stored = artifacts / run_id / "artifacts"
    assert json.loads((stored / "features.json").read_text())["features"] == [
        "recency",
        "frequency",
    ]
    assert json.loads((stored / "eval/extra.json").read_text()) == {
        "k": [0, 1, 2],
        "when": "2025-10-01T00:00:00",
    }
    assert (stored / "plots/roc.png").read_bytes()[:4] == b"\x89PNG"


def test_a_failing_job_leaves_a_failed_run(mlflow_settings):
    with pytest.raises(RuntimeError), tracked_run(mlflow_settings, "recs"):
        run_id = mlflow.active_run().info.run_id
        raise RuntimeError("boom")
    assert mlflow.active_run() is None
    assert mlflow.MlflowClient().get_run(run_id).info.status == "FAILED"


def test_sqlite_folder_is_created_when_tracking_starts(settings):
    db = sqlite_path(settings.tracking_uri)
    assert db == settings.home / "mlflow.db" and not db.parent.exists()
    assert use_tracking(settings) == settings.tracking_uri == mlflow.get_tracking_uri()
    assert db.parent.is_dir()
    assert sqlite_path("http://127.0.0.1:5000") is None


def test_logged_model_carries_our_code_and_pinned_requirements(mlflow_settings, tiny_model):
    model, x = tiny_model
    with tracked_run(mlflow_settings, "churn"):
        info = log_python_model(model, None, x, x.head(3), output_example=model.predict(None, x))
    local = Path(mlflow.artifacts.download_artifacts(info.model_uri))
    assert (local / "requirements.txt").read_text().split() == pip_requirements()
    for src in code_paths():
        name = Path(src).name
        bundled = {
            p.relative_to(local / "code" / name) for p in (local / "code" / name).rglob("*.py")
        }
        assert bundled == {p.relative_to(src) for p in Path(src).rglob("*.py")}
    assert not list((local / "code").rglob("__pycache__"))
    assert info.signature.inputs.input_names() == ["f1", "f2", "f3"]
