"""The champion gate, promotion, rollback and `omni models` on a real local SQLite registry
(issue 4). Models are a tiny real LogisticRegression logged with our code bundled."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from features.settings import get_settings
from serving.cli.main import app
from training.model_io import log_python_model
from training.model_registry import (
    CHALLENGER,
    CHAMPION,
    RegistryError,
    list_models,
    promote,
    register_with_gate,
    rollback,
)
from training.tracking import tracked_run

HOLDOUT = {"test_cutoff": "2025-10-01", "horizon_days": 60, "data_fingerprint": "abc123"}


@pytest.fixture
def model_uri(mlflow_settings, tiny_model) -> tuple[str, str]:
    """(run id, model URI) of the tiny model logged once in a churn run."""
    model, x = tiny_model
    with tracked_run(mlflow_settings, "churn", params={"C": 1.0}) as run:
        info = log_python_model(model, None, x, x.head(3), output_example=model.predict(None, x))
    return run.info.run_id, info.model_uri


def _gate(settings, model_uri, value, **kwargs):
    run_id, uri = model_uri
    kwargs.setdefault("holdout", HOLDOUT)
    return register_with_gate(settings, "churn", run_id, uri, "test_roc_auc", value, **kwargs)


def _aliases(settings) -> dict[str, int]:
    return {
        a: int(v) for a, v in mlflow.MlflowClient().get_registered_model("churn").aliases.items()
    }


def test_gate_first_is_champion_worse_is_challenger_better_is_champion(mlflow_settings, model_uri):
    first = _gate(mlflow_settings, model_uri, 0.80)
    assert (first.version, first.alias, first.promoted) == (1, CHAMPION, True)
    assert first.reason == "v1 test_roc_auc 0.8: first churn champion"

    worse = _gate(mlflow_settings, model_uri, 0.79)
    assert (worse.alias, worse.promoted) == (CHALLENGER, False)
    assert worse.reason == "v2 test_roc_auc 0.79 did not beat champion v1 0.8"
    tie = _gate(mlflow_settings, model_uri, 0.80)
    assert tie.alias == CHALLENGER  # a tie does not replace the champion
    assert _aliases(mlflow_settings) == {CHAMPION: 1, CHALLENGER: 3}

    better = _gate(mlflow_settings, model_uri, 0.83)
    assert (better.version, better.alias, better.previous_champion) == (4, CHAMPION, 1)
    assert better.reason == "v4 test_roc_auc 0.83 beat champion v1 0.8"
    assert _aliases(mlflow_settings) == {CHAMPION: 4}  # the old challenger challenged v1


def test_gate_takes_a_minimum_improvement(mlflow_settings, model_uri):
    # issue 19: OMNI_GATE_MIN_IMPROVEMENT, in the gate metric's units
    strict = dataclasses.replace(mlflow_settings, gate_min_improvement=0.02)
    _gate(strict, model_uri, 0.80)
    small = _gate(strict, model_uri, 0.81)
    assert small.alias == CHALLENGER
    assert small.reason == (
        "v2 test_roc_auc 0.81 did not beat champion v1 0.8 by more than 0.02 "
        "(OMNI_GATE_MIN_IMPROVEMENT)"
    )
    assert _gate(strict, model_uri, 0.83).alias == CHAMPION
    assert get_settings({"OMNI_GATE_MIN_IMPROVEMENT": "0.005"}).gate_min_improvement == 0.005
    for bad in ("-0.1", "a lot", "inf", "nan"):
        with pytest.raises(ValueError, match="OMNI_GATE_MIN_IMPROVEMENT must be a number"):
            get_settings({"OMNI_GATE_MIN_IMPROVEMENT": bad})


def test_lower_is_better_metrics_with_a_minimum_improvement(mlflow_settings, model_uri):
    run_id, uri = model_uri
    strict = dataclasses.replace(mlflow_settings, gate_min_improvement=0.02)
    gate = lambda v: register_with_gate(  # noqa: E731
        strict, "churn", run_id, uri, "test_log_loss", v, higher_is_better=False
    )
    assert gate(0.40).promoted
    assert not gate(0.39).promoted  # better, but by less than 0.02
    assert gate(0.37).promoted


def test_lower_is_better_metrics(mlflow_settings, model_uri):
    run_id, uri = model_uri
    gate = lambda v: register_with_gate(  # noqa: E731
        mlflow_settings, "churn", run_id, uri, "test_log_loss", v, higher_is_better=False
    )
    assert gate(0.40).promoted
    assert not gate(0.45).promoted
    assert gate(0.35).promoted


def test_different_holdouts_are_not_compared_unless_the_champion_is_rescored(
    mlflow_settings, model_uri
):
    _gate(mlflow_settings, model_uri, 0.80)
    later = {**HOLDOUT, "test_cutoff": "2025-11-01", "data_fingerprint": "def456"}
    d = _gate(mlflow_settings, model_uri, 0.95, holdout=later)
    assert d.alias == CHALLENGER
    assert d.reason == (
        "v2 test_roc_auc 0.95 not compared with champion v1 0.8: holdouts differ "
        "(data_fingerprint def456 vs abc123; test_cutoff 2025-11-01 vs 2025-10-01 for the "
        "champion); re-score the champion on this holdout or promote by hand"
    )
    # The job re-measured the champion on the new holdout: now the comparison is fair.
    d = _gate(mlflow_settings, model_uri, 0.95, holdout=later, champion_value=0.90)
    assert d.alias == CHAMPION
    assert d.reason == "v3 test_roc_auc 0.95 beat champion v1 0.9 (re-scored on this holdout)"
    # A different metric is not comparable either.
    d = register_with_gate(
        mlflow_settings, "churn", *model_uri, "test_average_precision", 0.99, holdout=later
    )
    assert d.alias == CHALLENGER and "was not gated on test_average_precision" in d.reason


def test_non_finite_metric_and_unknown_model_are_refused(mlflow_settings, model_uri):
    with pytest.raises(RegistryError, match="non-finite"):
        _gate(mlflow_settings, model_uri, float("nan"))
    with pytest.raises(RegistryError, match="unknown model 'chrun'"):
        register_with_gate(mlflow_settings, "chrun", *model_uri, "test_roc_auc", 0.8)


def test_promote_and_rollback_walk_the_champion_history(mlflow_settings, model_uri):
    for value in (0.80, 0.78, 0.85):  # v1 champion, v2 challenger, v3 champion (previous v1)
        _gate(mlflow_settings, model_uri, value)
    assert promote(mlflow_settings, "churn", "v2") == "churn@champion: v2 (was v3)"
    assert _aliases(mlflow_settings) == {CHAMPION: 2}  # the challenger alias left with it
    assert promote(mlflow_settings, "churn", 2) == "churn: v2 is already champion"

    assert rollback(mlflow_settings, "churn") == "churn@champion: v3 (rolled back from v2)"
    assert rollback(mlflow_settings, "churn") == "churn@champion: v1 (rolled back from v3)"
    with pytest.raises(RegistryError, match="replaced no earlier champion"):
        rollback(mlflow_settings, "churn")
    with pytest.raises(RegistryError, match=r"churn has no version 9 \(versions: 1, 2, 3\)"):
        promote(mlflow_settings, "churn", 9)
    with pytest.raises(RegistryError, match="version must be a number"):
        promote(mlflow_settings, "churn", "latest")
    with pytest.raises(RegistryError, match="no recommender model is registered yet"):
        promote(mlflow_settings, "recommender", 1)


def test_list_shows_versions_aliases_metrics_and_reasons(mlflow_settings, model_uri):
    assert list_models(mlflow_settings) == []
    _gate(mlflow_settings, model_uri, 0.80)
    _gate(mlflow_settings, model_uri, 0.70)
    rows = list_models(mlflow_settings)
    assert [(r.name, r.version, r.aliases, r.metric, r.value) for r in rows] == [
        ("churn", 2, (CHALLENGER,), "test_roc_auc", 0.70),
        ("churn", 1, (CHAMPION,), "test_roc_auc", 0.80),
    ]
    assert rows[0].reason == "v2 test_roc_auc 0.7 did not beat champion v1 0.8"
    assert rows[0].run_id == model_uri[0]
    assert list_models(mlflow_settings, "recommender") == []


def test_list_does_not_create_a_store(settings):
    assert list_models(settings) == []
    assert not settings.home.exists()


def test_champion_loads_by_alias_and_predicts(mlflow_settings, model_uri, tiny_model):
    _gate(mlflow_settings, model_uri, 0.80)
    loaded = mlflow.pyfunc.load_model("models:/churn@champion")
    model, x = tiny_model
    shuffled = x[["f3", "f1", "f2"]]  # columns by name, not position
    pd.testing.assert_frame_equal(loaded.predict(shuffled), model.predict(None, x))


@pytest.mark.slow
def test_champion_loads_without_our_packages_on_the_path(mlflow_settings, model_uri, tiny_model):
    """Load `models:/churn@champion` in a fresh interpreter from which every sys.path entry
    that provides `features` / `training` (the editable install, PYTHONPATH, cwd) has been
    removed: the model must import the copy of our code that MLflow stored with it.

    This proves the model carries the code it unpickles; it does not prove that the pinned
    requirements install elsewhere (same interpreter and site-packages here)."""
    _gate(mlflow_settings, model_uri, 0.80)
    model, x = tiny_model
    x.to_parquet(mlflow_settings.home / "x.parquet")
    script = """
import importlib.util, json, os, sys
sys.path = [p for p in sys.path if p and not os.path.exists(os.path.join(p, "training"))]
assert importlib.util.find_spec("training") is None, "our package is still importable"
import mlflow, pandas as pd
model = mlflow.pyfunc.load_model("models:/churn@champion")
pred = model.predict(pd.read_parquet(sys.argv[1]))
print(json.dumps({"file": sys.modules["training.model_io"].__file__,
                  "pred": pred.to_numpy().tolist()}))
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["MLFLOW_TRACKING_URI"] = mlflow_settings.tracking_uri
    out = subprocess.run(
        [sys.executable, "-I", "-c", script, str(mlflow_settings.home / "x.parquet")],
        capture_output=True,
        text=True,
        env=env,
        cwd=mlflow_settings.home,
        timeout=180,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    repo = Path(__file__).resolve().parents[1]
    loaded_from = Path(result["file"])
    assert loaded_from.parts[-3:] == ("code", "training", "model_io.py")
    assert repo not in loaded_from.parents
    np.testing.assert_allclose(result["pred"], model.predict(None, x).to_numpy())


def test_models_commands(mlflow_settings, model_uri, monkeypatch):
    _gate(mlflow_settings, model_uri, 0.80)
    _gate(mlflow_settings, model_uri, 0.75)
    monkeypatch.setenv("OMNI_HOME", str(mlflow_settings.home))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    runner = CliRunner()

    def omni(*args):
        return runner.invoke(app, ["models", *args], env={"COLUMNS": "200"})

    res = omni("list")
    assert res.exit_code == 0, res.output
    assert "@champion" in res.output and "@challenger" in res.output
    assert "v2 test_roc_auc 0.75 did not beat champion v1 0.8" in res.output
    res = omni("promote", "churn", "2")
    assert res.exit_code == 0 and "churn@champion: v2 (was v1)" in res.output
    res = omni("rollback", "churn")
    assert res.exit_code == 0 and "churn@champion: v1 (rolled back from v2)" in res.output
    res = omni("promote", "churn", "7")
    assert res.exit_code == 2
    assert "churn has no version 7 (versions: 1, 2)" in res.output


def test_models_errors_exit_2_without_traceback(mlflow_settings, model_uri):
    _gate(mlflow_settings, model_uri, 0.80)
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.update(OMNI_HOME=str(mlflow_settings.home), COLUMNS="200")
    for args, message in (
        (["promote", "nope", "1"], "unknown model 'nope'"),
        (["rollback", "churn"], "churn champion v1 replaced no earlier champion"),
    ):
        res = subprocess.run(
            [sys.executable, "-m", "serving.cli", "models", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )
        assert res.returncode == 2, res.stderr
        assert message in res.stderr and "Traceback" not in res.stderr
