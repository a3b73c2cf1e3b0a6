"""The recommendation job end to end on small synthetic data: tracked run, baselines in the
same run, pyfunc model that scores like the in-memory one, champion gate."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest

from features.sources.synthetic import generate
from training.recs.job import GATE_METRIC, REGISTERED_NAME, train_recommender

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def synth():
    data = generate(n_customers=1200, days=120, seed=5)
    data.events["customer_id"] = data.truth["event_person"]["person_id"].to_numpy()
    return data


def test_job_logs_registers_and_the_logged_model_scores(settings, synth):
    params = {"iterations": 6, "factors": 16}
    args = (synth.events, synth.customers, synth.products, synth.stores)
    result = train_recommender(settings, *args, params=params)
    assert result.decision.alias == "champion"
    table = result.table
    assert set(table.index) == {"model", "popularity", "buy_again_popularity", "implicit_als"}
    assert result.split.test == pd.Timestamp("2025-12-18", tz="UTC")
    assert result.split.valid + pd.Timedelta(days=14) == result.split.test

    run = mlflow.get_run(result.run_id)
    logged = run.data.metrics
    assert logged[GATE_METRIC] == pytest.approx(result.metrics[GATE_METRIC])
    for base in ("popularity", "buy_again_popularity", "implicit_als"):
        assert f"baseline_{base}_{GATE_METRIC}" in logged
    assert run.data.params["horizon_days"] == "14"
    # issue 19: the ranker's LightGBM hyperparameters and the data as a dataset input
    ranker = {k: v for k, v in run.data.params.items() if k.startswith("lgbm_")}
    assert ranker.keys() == {f"lgbm_{k}" for k in result.model.ranker_.get_params()}
    assert ranker["lgbm_objective"] == "lambdarank"
    (used,) = run.inputs.dataset_inputs
    assert used.dataset.digest == run.data.params["events_fingerprint"]
    assert {t.key: t.value for t in used.tags}["test_cutoff"] == f"{result.split.test:%Y-%m-%d}"
    assert run.data.metrics["seconds_fit_model"] > 0
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(result.run_id, "plots")}
    # issue 16: the ALS search is logged, one step per candidate, plus a JSON artifact
    client = mlflow.MlflowClient()
    steps = client.get_metric_history(result.run_id, "als_search_valid_new_ndcg_at_10")
    assert len(steps) == len(result.als_search.rows) > 1
    tuning = {a.path for a in client.list_artifacts(result.run_id, "tuning")}
    assert "tuning/als_search.json" in tuning
    assert {"plots/metric_by_k.png", "plots/feature_importance.png"} <= artifacts
    # issue 19: every metric at each k as a step metric, charted against k in the UI
    by_k = result.evaluations["model"].by_k
    for metric in ("precision", "recall", "ndcg", "map", "hit_rate"):
        for prefix in ("test_", "baseline_popularity_test_"):
            history = client.get_metric_history(result.run_id, f"{prefix}{metric}_at_k")
            assert sorted(m.step for m in history) == by_k["k"].tolist() == list(range(1, 21))
        at = {
            m.step: m.value for m in client.get_metric_history(result.run_id, f"test_{metric}_at_k")
        }
        assert at[10] == pytest.approx(logged[f"test_{metric}_at_10"])
        assert [at[k] for k in by_k["k"]] == pytest.approx(by_k[metric].tolist())

    loaded = mlflow.pyfunc.load_model(f"models:/{REGISTERED_NAME}@champion")
    ids = list(result.model.catalogue_.customer_ids[result.model.state_.active][:5])
    request = pd.DataFrame({"customer_id": [*ids, "brand-new"]})  # context columns optional
    served = loaded.predict(request)
    direct = result.model.recommend(request["customer_id"], k=10, rest_bought=True)
    direct["reason"] = direct["reason"].astype("str")
    pd.testing.assert_frame_equal(served.reset_index(drop=True), direct, check_dtype=False)

    # issue 19: the ranker in MLflow's lightgbm flavour scores like the fitted one
    raw = result.model.ranker_.booster_
    booster = mlflow.lightgbm.load_model(f"runs:/{result.run_id}/ranker_booster")
    assert booster.feature_name() == raw.feature_name() == result.model.features_
    rows = np.random.default_rng(0).exponential(3.0, (500, raw.num_feature())).astype(np.float32)
    assert np.ptp(raw.predict(rows)) > 0  # the rows reach different leaves
    np.testing.assert_allclose(booster.predict(rows), raw.predict(rows))

    # same data, same seed: same metrics -> not better than the champion -> challenger
    again = train_recommender(settings, *args, params=params)
    assert again.metrics[GATE_METRIC] == result.metrics[GATE_METRIC]
    assert again.decision.alias == "challenger"


def test_omni_train_recs_cli(tmp_path):
    """`omni train recs` on a freshly generated store: trains, prints the table, registers."""
    import os
    import subprocess
    import sys

    # a fresh home and its own MLflow store (an earlier test's tracking URI stays in the env)
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env |= {"OMNI_HOME": str(tmp_path / "home"), "COLUMNS": "200"}
    omni = [sys.executable, "-m", "serving.cli"]
    synth = ["data", "synth", "--customers", "800", "--days", "120", "--seed", "3"]
    for args in (synth, ["train", "recs"]):
        res = subprocess.run(
            [*omni, *args], env=env, capture_output=True, text=True, timeout=600, check=False
        )
        assert res.returncode == 0, res.stdout + res.stderr
    assert "buy_again_popularity" in res.stdout
    assert "@champion" in res.stdout
