"""MLflow faults (training/tracking.py): a tracking server that does not answer is a one-line
error in seconds, and runs whose process was killed do not stay RUNNING (issue 14)."""

from __future__ import annotations

import http.server
import os
import socket
import threading
import time

import mlflow
import pytest
from killing import ended_pid

from serving.process import free_port
from training.tracking import (
    PROBE_TIMEOUT_S,
    TAG_HOST,
    TAG_PID,
    RegistryUnreachable,
    check_reachable,
    ensure_experiment,
    fail_abandoned_runs,
    registry_errors,
    tracked_run,
    use_tracking,
)


def test_runs_of_ended_processes_are_marked_failed_and_no_others(mlflow_settings):
    # issue 14: a run killed mid-way stayed RUNNING forever
    client = mlflow.MlflowClient(use_tracking(mlflow_settings))
    experiment = ensure_experiment(mlflow_settings, "churn")
    host, dead = socket.gethostname(), str(ended_pid())

    def run(**tags: str) -> str:
        return client.create_run(experiment, tags=tags).info.run_id

    killed = run(**{TAG_HOST: host, TAG_PID: dead})
    live = run(**{TAG_HOST: host, TAG_PID: str(os.getpid())})  # a training still at work
    elsewhere = run(**{TAG_HOST: "another-host", TAG_PID: dead})  # its pid means nothing here
    untagged = run()  # from older code: nothing says whose it is
    finished = run(**{TAG_HOST: host, TAG_PID: dead})
    client.set_terminated(finished, "FINISHED")

    assert fail_abandoned_runs(mlflow_settings) == [killed]
    status = {r: client.get_run(r).info.status for r in (killed, live, elsewhere, untagged)}
    assert status == {
        killed: "FAILED",
        live: "RUNNING",
        elsewhere: "RUNNING",
        untagged: "RUNNING",
    }
    assert client.get_run(finished).info.status == "FINISHED"
    assert "ended" in client.get_run(killed).data.tags["omni.abandoned"]


def test_a_tracked_run_records_its_process_and_clears_abandoned_runs(mlflow_settings):
    client = mlflow.MlflowClient(use_tracking(mlflow_settings))
    experiment = ensure_experiment(mlflow_settings, "channel")
    tags = {TAG_HOST: socket.gethostname(), TAG_PID: str(ended_pid())}
    killed = client.create_run(experiment, tags=tags).info.run_id
    with tracked_run(mlflow_settings, "channel") as active:
        mine = client.get_run(active.info.run_id).data.tags
        assert mine[TAG_PID] == str(os.getpid()) and mine[TAG_HOST] == socket.gethostname()
        assert client.get_run(killed).info.status == "FAILED"


def test_mlflow_gets_short_http_timeouts_unless_the_user_set_them(mlflow_settings, monkeypatch):
    # issue 14: MLflow's defaults (120 s timeout, 7 retries with backoff) took minutes
    from mlflow.environment_variables import (
        MLFLOW_HTTP_REQUEST_MAX_RETRIES,
        MLFLOW_HTTP_REQUEST_TIMEOUT,
    )

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")  # the user's choice stays
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    use_tracking(mlflow_settings)
    assert MLFLOW_HTTP_REQUEST_TIMEOUT.get() == 60
    assert MLFLOW_HTTP_REQUEST_MAX_RETRIES.get() == 2


def test_a_server_that_refuses_is_one_line_at_once():
    uri = f"http://user:secret@127.0.0.1:{free_port()}"  # nothing listens there
    t0 = time.perf_counter()
    with pytest.raises(RegistryUnreachable) as caught:
        check_reachable(uri)
    assert time.perf_counter() - t0 < 2
    message = str(caught.value)
    assert "cannot reach the MLflow registry" in message and "connection refused" in message
    assert "secret" not in message and "\n" not in message


@pytest.mark.slow
def test_a_server_that_accepts_but_never_answers_is_one_line_after_the_probe():
    with socket.socket() as silent:  # accepts connections (backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        uri = f"http://127.0.0.1:{silent.getsockname()[1]}"
        t0 = time.perf_counter()
        with pytest.raises(RegistryUnreachable, match="no answer"):
            check_reachable(uri)
        assert time.perf_counter() - t0 < PROBE_TIMEOUT_S + 2


def test_any_http_answer_counts_as_reachable():
    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # no /health here: still a server that answers
            self.send_error(404)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        check_reachable(f"http://127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()


def test_losing_the_server_mid_way_is_one_line(mlflow_settings, monkeypatch):
    # issue 14: MLflow's error came as five chained tracebacks
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    settings = type(mlflow_settings)(
        home=mlflow_settings.home, tracking_uri=f"http://127.0.0.1:{free_port()}"
    )
    client = mlflow.MlflowClient(settings.tracking_uri)  # no probe: as if it went away later
    lost = pytest.raises(RegistryUnreachable, match="lost the MLflow registry")
    with lost, registry_errors(settings):
        client.search_experiments()
