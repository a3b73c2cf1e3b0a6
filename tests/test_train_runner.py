"""Training runs end to end on a real SQLite MLflow store: logged, gated, loadable by alias."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.sources.synthetic import generate
from features.store.identity import resolve_identities
from training.customer_models.classifiers import model_matrix
from training.customer_models.job import JobConfig
from training.runner import run_customer_job

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data():
    source = generate(n_customers=1500, days=365, seed=21)
    events, _ = resolve_identities(source.events)
    return events, source.customers


def test_churn_run_is_logged_registered_and_loadable(settings, data):
    import mlflow

    events, customers = data
    config = JobConfig(seed=3, params={"n_estimators": 200})
    first = run_customer_job(settings, "churn", events, customers, config)
    assert first.decision.alias == "champion"

    run = mlflow.get_run(first.run_id)
    assert run.data.metrics["test_roc_auc"] == pytest.approx(first.result.metrics["test_roc_auc"])
    assert "baseline_recency_test_roc_auc" in run.data.metrics
    split = first.result.split
    assert run.data.params["cutoff_test_cutoff"] == f"{split.test:%Y-%m-%d}"
    assert int(run.data.params["n_features"]) == len(first.result.model.features_)
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(first.run_id)}
    assert {"roc.png", "calibration.png", "feature_importance.png", "features.json"} <= artifacts
    # issue 19: every LightGBM hyperparameter (defaults too), the fit time, the dataset
    booster = first.result.model.booster_
    lgbm = {k: v for k, v in run.data.params.items() if k.startswith("lgbm_")}
    assert lgbm.keys() == {f"lgbm_{k}" for k in booster.get_params()}
    assert lgbm["lgbm_n_estimators"] == "200" and "lgbm_num_leaves" in lgbm  # given, default
    assert 0 < run.data.metrics["seconds_fit_model"] <= run.data.metrics["seconds_job"]
    (used,) = run.inputs.dataset_inputs
    assert used.dataset.name == "events"
    assert used.dataset.digest == run.data.params["events_fingerprint"]
    assert used.dataset.source_type == "local" and "store/events" in used.dataset.source
    assert {t.key: t.value for t in used.tags}["test_cutoff"] == f"{split.test:%Y-%m-%d}"
    # issue 19: a run name that says what it is, descriptions written at registration
    assert run.info.run_name == f"churn test {split.test:%Y-%m-%d} {split.horizon_days}d"
    client = mlflow.MlflowClient()
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.tags["mlflow.note.content"].startswith("Churn risk: the probability")
    assert client.get_registered_model("churn").description.startswith("Churn risk")
    card = client.get_model_version("churn", str(first.decision.version)).description
    assert "Gate: test_average_precision" in card and first.decision.reason in card
    assert run.data.params["events_fingerprint"] in card
    assert f"test_cutoff {split.test:%Y-%m-%d}" in card

    # The registered champion scores exactly like the fitted model.
    loaded = mlflow.pyfunc.load_model("models:/churn@champion")
    X = first.result.input_example
    served = loaded.predict(X)["churn_probability"].to_numpy()
    np.testing.assert_allclose(served, first.result.model.predict_proba(X)[:, 1])

    # issue 19: the raw booster in MLflow's lightgbm flavour beside the pyfunc; it reads the
    # features plus the BG/NBD columns (listed in its metadata) and scores before calibration
    model, rows = first.result.model, first.result.test_X
    uri = f"runs:/{first.run_id}/booster"
    booster = mlflow.lightgbm.load_model(uri)
    assert mlflow.models.get_model_info(uri).metadata["feature_names"] == model.booster_features_
    matrix = model._booster_input(model_matrix(rows, model.features_))
    assert booster.num_feature() == matrix.shape[1] > len(model.features_)
    np.testing.assert_allclose(booster.predict(matrix), model.booster_.booster_.predict(matrix))
    np.testing.assert_allclose(booster.predict(matrix), model.predict_raw(rows))

    # Same data, params and seed: same metrics, so the gate keeps the champion.
    second = run_customer_job(settings, "churn", events, customers, config)
    assert second.result.metrics == first.result.metrics
    assert second.decision.alias == "challenger"
    assert "did not beat" in second.decision.reason


def test_channel_model_applies_consent_when_served(settings, data):
    import mlflow

    events, customers = data
    outcome = run_customer_job(
        settings, "channel", events, customers, JobConfig(seed=3, params={"n_estimators": 100})
    )
    loaded = mlflow.pyfunc.load_model("models:/next_best_channel@champion")
    X = outcome.result.input_example.copy()
    X["consent_email"] = False
    out = loaded.predict(X)
    assert (out["email"] == 0).all()
    np.testing.assert_allclose(out.sum(axis=1), 1.0)
    assert isinstance(out, pd.DataFrame)

    # issue 19: the booster in MLflow's lightgbm flavour gives the probabilities before consent
    model, rows = outcome.result.model, outcome.result.test_X
    booster = mlflow.lightgbm.load_model(f"runs:/{outcome.run_id}/booster")
    matrix = model_matrix(rows, model.booster_features_)
    np.testing.assert_allclose(booster.predict(matrix), model.booster_.booster_.predict(matrix))
    np.testing.assert_allclose(booster.predict(matrix), model.predict_proba(rows))

    # issue 19: precision, recall and support of every channel class in the run
    logged = mlflow.get_run(outcome.run_id).data.metrics
    per_class = outcome.result.class_metrics
    assert per_class.keys() == {
        f"test_{m}_{c}" for m in ("precision", "recall", "support") for c in model.classes_
    }
    assert {k: logged[k] for k in per_class} == pytest.approx(per_class)


def test_retrain_on_newer_data_is_gated_on_the_new_holdout(settings, data):
    """Regression (issue 4): a retrain after new data arrives has a new test cutoff; the
    runner re-scores the champion there, so the gate compares like with like."""
    events, customers = data
    config = JobConfig(seed=3, n_train_cutoffs=2, params={"n_estimators": 100})
    older = events[events["ts"] < events["ts"].max() - pd.Timedelta(days=30)]
    first = run_customer_job(settings, "churn", older, customers, config)
    assert first.decision.alias == "champion"
    newer = run_customer_job(settings, "churn", events, customers, config)
    assert newer.result.split.test != first.result.split.test
    assert "(re-scored on this holdout)" in newer.decision.reason
    assert "not compared" not in newer.decision.reason
