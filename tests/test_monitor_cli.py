"""`omni monitor` on the trained home (issue 19): the report, its MLflow run, and an exit
code a scheduler can act on."""

from __future__ import annotations

import json

import pytest
from cli_helpers import omni

pytestmark = pytest.mark.slow


def test_monitor_reports_logs_and_exits_by_the_limit(trained_home):
    calm = omni("monitor", "--fail-above", "1000", home=trained_home)
    assert calm.returncode == 0, calm.stdout[-2000:] + calm.stderr[-2000:]
    assert "cold-start customers:" in calm.stdout and "logged to MLflow run" in calm.stdout

    strict = omni("monitor", "--fail-above", "0", "--json", home=trained_home)
    assert strict.returncode == 1, strict.stderr[-2000:]
    assert "PSI over 0" in strict.stderr and "Traceback" not in strict.stderr
    report = json.loads(strict.stdout)
    assert report["above_fail"] and set(report["above_fail"]) <= set(report["psi"])
    assert "score:churn" in report["psi"]
    assert any(name.startswith("score:next_best_channel_") for name in report["psi"])
    assert report["reference_cutoff"] < report["as_of"]

    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{trained_home / 'mlflow.db'}")
    run = mlflow.get_run(report["mlflow_run_id"])
    assert run.data.params["snapshot"] == report["snapshot"]
    assert run.data.metrics["psi_score_churn"] == pytest.approx(report["psi"]["score:churn"])


def test_monitor_without_a_snapshot_is_one_line_and_exit_2(tmp_path):
    res = omni("monitor", home=tmp_path / "empty")
    assert res.returncode == 2 and "Traceback" not in res.stderr
