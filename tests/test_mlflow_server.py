"""The same tracking and registry code against a real `mlflow server` (issue 4): the
default SQLite store is only a default, MLFLOW_TRACKING_URI points anywhere."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from service_helpers import stop

from features.settings import get_settings
from serving.process import free_port
from training.model_io import log_python_model
from training.model_registry import CHALLENGER, CHAMPION, list_models, register_with_gate
from training.tracking import tracked_run

STARTUP_TIMEOUT_S = 180  # importing the server takes ~10 s, several times that on a busy machine


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture
def mlflow_server(tmp_path) -> Iterator[tuple[str, Path]]:
    """(URL, artifacts folder) of an `mlflow server` on a free local port; always stopped."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    artifacts = tmp_path / "server_artifacts"
    log = (tmp_path / "server.log").open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            f"sqlite:///{tmp_path / 'server.db'}",
            "--artifacts-destination",
            str(artifacts),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        start_new_session=True,  # its own process group: the uvicorn worker stops with it
    )
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not _healthy(url):
            if proc.poll() is not None:
                pytest.fail(f"mlflow server exited ({proc.returncode}):\n{_tail(tmp_path)}")
            if time.monotonic() > deadline:
                pytest.fail(
                    f"mlflow server not healthy after {STARTUP_TIMEOUT_S} s:\n{_tail(tmp_path)}"
                )
            time.sleep(0.5)
        yield url, artifacts
    finally:
        stop(proc)
        log.close()


def _tail(tmp_path: Path) -> str:
    return (tmp_path / "server.log").read_text()[-3000:]


@pytest.mark.slow
def test_gate_and_load_by_alias_through_a_tracking_server(mlflow_server, tmp_path, tiny_model):
    url, server_artifacts = mlflow_server
    settings = get_settings({"OMNI_HOME": str(tmp_path / "home"), "MLFLOW_TRACKING_URI": url})
    model, x = tiny_model
    with tracked_run(settings, "churn", params={"C": 1.0}) as run:
        info = log_python_model(model, None, x, x.head(3), output_example=model.predict(None, x))
    run_id = run.info.run_id

    first = register_with_gate(settings, "churn", run_id, info.model_uri, "test_roc_auc", 0.8)
    worse = register_with_gate(settings, "churn", run_id, info.model_uri, "test_roc_auc", 0.7)
    assert (first.alias, worse.alias) == (CHAMPION, CHALLENGER)
    assert [(r.version, r.aliases) for r in list_models(settings)] == [
        (2, (CHALLENGER,)),
        (1, (CHAMPION,)),
    ]

    assert mlflow.get_tracking_uri() == url  # load_model below resolves the alias there
    loaded = mlflow.pyfunc.load_model("models:/churn@champion")
    pd.testing.assert_frame_equal(loaded.predict(x), model.predict(None, x))

    # Everything went through the server: its artifact store holds the model and our
    # code; nothing was written in the local data home.
    assert list(server_artifacts.rglob("code/training/model_io.py"))
    assert not (tmp_path / "home").exists()
