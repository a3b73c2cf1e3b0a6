"""Waiting for a service subprocess: a service that does not come up says why."""

from __future__ import annotations

import subprocess
import sys

import pytest

from serving.process import free_port, wait_ready


def test_a_service_that_exits_is_reported_with_the_end_of_its_log(tmp_path):
    log = tmp_path / "service.log"
    script = "import sys; print('starting'); print('no model in the snapshot'); sys.exit(3)"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=out)
    with pytest.raises(RuntimeError) as caught:
        wait_ready(f"http://127.0.0.1:{free_port()}", proc, limit=30, log=log)
    message = str(caught.value)
    assert message.startswith("bentoml serve exited with status 3")
    assert str(log) in message
    assert message.endswith("\n    starting\n    no model in the snapshot")


def test_without_a_log_the_error_is_one_line(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(2)"])
    with pytest.raises(RuntimeError, match=r"^bentoml serve exited with status 2$"):
        wait_ready(f"http://127.0.0.1:{free_port()}", proc, limit=30)


def test_an_unreadable_log_is_named_not_raised(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(1)"])
    missing = tmp_path / "absent.log"
    with pytest.raises(RuntimeError, match="could not be read"):
        wait_ready(f"http://127.0.0.1:{free_port()}", proc, limit=30, log=missing)
