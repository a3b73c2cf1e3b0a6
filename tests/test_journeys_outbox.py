"""The outbox (issue 18): JSON Lines per channel and run, written atomically; delivery by
HTTP POST against a real local server (a 503 then success, a 400, nobody listening),
resumed from the delivery marker and never sent twice."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from serving.journeys.decisions import read_decisions, write_decisions
from serving.journeys.outbox import (
    FIELDS,
    OutboxError,
    delivered_count,
    delivered_marker,
    post_outbox,
    write_outbox,
)

AS_OF = pd.Timestamp("2026-03-10 12:00", tz="UTC")


def _decisions() -> pd.DataFrame:
    rows = [
        ("c1", "email", "sent", "sent", AS_OF),
        ("c2", "sms", "delayed", "quiet_hours", pd.Timestamp("2026-03-11 08:00:00.5", tz="UTC")),
        ("c3", "email", "delayed", "quiet_hours", pd.Timestamp("2026-03-11 08:00", tz="UTC")),
        ("c4", "push", "not_sent", "capped", pd.NaT),
        ("c5", None, "not_sent", "no_consent", pd.NaT),
    ]
    n = len(rows)
    return pd.DataFrame(
        {
            "decision_id": [f"run-{i}" for i in range(n)],
            "run_id": "run",
            "decided_at": AS_OF,
            "customer_id": [r[0] for r in rows],
            "journey": "cart",
            "trigger_ts": AS_OF - pd.Timedelta(hours=3),
            "status": [r[2] for r in rows],
            "reason": [r[3] for r in rows],
            "channel": [r[1] for r in rows],
            "send_at": pd.to_datetime([r[4] for r in rows], utc=True),
            "products": [["p1", "p2"], [], ["p3"], ["p4"], ["p5"]],
            "churn_probability": [0.1, 0.2, 0.3, 0.4, 0.5],
            "channel_probability": [0.6, np.nan, 0.8, 0.9, 1.0],
            "uplift": np.nan,
            "priority": np.int32(10),
        }
    )


def _read(file: Path) -> list[dict]:
    return [json.loads(line) for line in file.read_text().splitlines()]


def test_write_outbox_one_file_per_channel(tmp_path):
    files = write_outbox(tmp_path, _decisions(), "run")
    assert files == {
        "email": tmp_path / "outbox" / "email" / "run.jsonl",
        "sms": tmp_path / "outbox" / "sms" / "run.jsonl",
    }
    email = _read(files["email"])
    assert [list(m) for m in email] == [list(FIELDS)] * 2
    assert email[0] == {
        "decision_id": "run-0",
        "customer_id": "c1",
        "journey": "cart",
        "channel": "email",
        "send_at": "2026-03-10T12:00:00Z",
        "products": ["p1", "p2"],
        "churn_probability": 0.1,
        "channel_probability": 0.6,
    }
    assert email[1]["send_at"] == "2026-03-11T08:00:00Z"
    sms = _read(files["sms"])
    assert sms == [
        {
            "decision_id": "run-1",
            "customer_id": "c2",
            "journey": "cart",
            "channel": "sms",
            "send_at": "2026-03-11T08:00:00.500000Z",
            "products": [],
            "churn_probability": 0.2,
            "channel_probability": None,
        }
    ]
    # no temporary files left beside them
    assert sorted(p.name for p in (tmp_path / "outbox" / "email").iterdir()) == ["run.jsonl"]


def test_write_outbox_from_the_stored_log(tmp_path):
    write_decisions(tmp_path, _decisions(), "run")
    files = write_outbox(tmp_path, read_decisions(tmp_path), "run")
    assert [m["products"] for m in _read(files["email"])] == [["p1", "p2"], ["p3"]]


def test_nothing_to_send_writes_nothing(tmp_path):
    d = _decisions()
    assert write_outbox(tmp_path, d[d["status"] == "not_sent"], "run") == {}
    assert not (tmp_path / "outbox").exists()


# --------------------------------------------------------------------------- posting


class _Receiver:
    """A local HTTP server: answers each POST with the next status of ``statuses`` (the
    last one repeats) and keeps the JSON bodies it accepted."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.requests = 0
        self.accepted: list[list[dict]] = []
        self.keys: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status = receiver.statuses[min(receiver.requests, len(receiver.statuses) - 1)]
                receiver.requests += 1
                if status < 300:
                    receiver.accepted.append(json.loads(body))
                    receiver.keys.append(self.headers["Idempotency-Key"])
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/messages"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()

    @property
    def messages(self) -> list[str]:
        return [m["decision_id"] for body in self.accepted for m in body]


@pytest.fixture
def receiver() -> Iterator[Callable[..., _Receiver]]:
    started: list[_Receiver] = []

    def start(*statuses: int) -> _Receiver:
        started.append(_Receiver(list(statuses)))
        return started[-1]

    yield start
    for r in started:
        r.close()


def _outbox_file(tmp_path: Path, n: int) -> Path:
    d = pd.concat([_decisions().iloc[:1]] * n, ignore_index=True)
    d["decision_id"] = [f"run-{i}" for i in range(n)]
    return write_outbox(tmp_path, d, "run")["email"]


def test_post_retries_a_503_then_delivers_once(tmp_path, receiver):
    file = _outbox_file(tmp_path, 5)
    server = receiver(503, 200)
    assert post_outbox(server.url, file, batch=2, backoff_s=0) == 5
    assert server.requests == 4  # the 503, then three batches of 2, 2 and 1
    assert server.messages == [f"run-{i}" for i in range(5)]
    assert [len(body) for body in server.accepted] == [2, 2, 1]
    assert server.keys == ["email/run.jsonl:0", "email/run.jsonl:2", "email/run.jsonl:4"]
    assert delivered_count(file) == 5
    # posting again sends nothing
    assert post_outbox(server.url, file, batch=2, backoff_s=0) == 0
    assert server.requests == 4


def test_an_interrupted_delivery_resumes_where_it_stopped(tmp_path, receiver):
    file = _outbox_file(tmp_path, 5)
    failing = receiver(200, 503)
    with pytest.raises(OutboxError) as err:
        post_outbox(failing.url, file, retries=2, batch=2, backoff_s=0)
    assert failing.url in str(err.value) and str(file) in str(err.value)
    assert "after 3 attempts" in str(err.value) and "HTTP 503" in str(err.value)
    assert failing.requests == 4  # one accepted batch, then 1 + 2 retries
    assert delivered_marker(file).read_text().strip() == "2"
    good = receiver(200)
    assert post_outbox(good.url, file, batch=2, backoff_s=0) == 3
    assert failing.messages + good.messages == [f"run-{i}" for i in range(5)]


def test_a_4xx_is_not_retried(tmp_path, receiver):
    file = _outbox_file(tmp_path, 3)
    server = receiver(400)
    with pytest.raises(OutboxError, match="refused") as err:
        post_outbox(server.url, file, backoff_s=0)
    assert server.url in str(err.value) and str(file) in str(err.value)
    assert "HTTP 400" in str(err.value)
    assert server.requests == 1
    assert delivered_count(file) == 0


def test_nobody_listening(tmp_path):
    file = _outbox_file(tmp_path, 3)
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens on it
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/messages"
    with pytest.raises(OutboxError, match="ConnectionError") as err:
        post_outbox(url, file, retries=1, timeout_s=2, backoff_s=0)
    assert url in str(err.value) and str(file) in str(err.value)
    assert not delivered_marker(file).exists()


def test_deliver_posts_each_channels_pending_files_once(tmp_path, receiver):
    from typer.testing import CliRunner

    from features.settings import get_settings
    from serving.cli.main import app

    home = tmp_path / "home"
    journeys = home / "journeys"
    write_outbox(journeys, _decisions(), "run1")
    email, sms = receiver(200), receiver(503)
    (journeys / "policy.yaml").write_text(f"webhooks: {{email: {email.url}}}\n")
    runner = CliRunner()
    env = {"OMNI_HOME": str(home)}
    res = runner.invoke(app, ["journeys", "deliver"], env=env)
    assert res.exit_code == 0, res.output
    assert "email: 2 messages from 1 files" in res.output
    assert email.messages == ["run-0", "run-2"]
    again = runner.invoke(app, ["journeys", "deliver"], env=env)
    assert "email: 0 messages from 0 files" in again.output and email.requests == 1
    # a webhook that keeps failing: exit 1, one line naming the URL and the file
    (journeys / "policy.yaml").write_text(f"webhooks: {{sms: {sms.url}}}\n")
    res = runner.invoke(app, ["journeys", "deliver", "--retries", "0"], env=env)
    assert res.exit_code == 1 and sms.url in res.output and "sms/run1.jsonl" in res.output
    assert "Traceback" not in res.output
    # no webhooks: exit 2 and what to add
    (journeys / "policy.yaml").write_text("timezone: UTC\n")
    res = runner.invoke(app, ["journeys", "deliver"], env=env)
    assert res.exit_code == 2 and "no webhooks" in res.output
    (journeys / "policy.yaml").write_text("webhooks: {email: 'ftp://x'}\n")
    res = runner.invoke(app, ["journeys", "deliver"], env=env)
    assert res.exit_code == 2 and "field 'webhooks'" in res.output
    assert get_settings(env).journeys_dir == journeys


def test_a_run_logged_but_killed_before_its_outbox_gets_it_written():
    import tempfile

    from serving.journeys.outbox import repair_outbox

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_decisions(folder, _decisions(), "run1")  # the kill: no outbox written
        write_decisions(folder, _decisions().iloc[3:], "run2")  # nothing to send
        assert repair_outbox(folder) == ["run1"]
        email = _read(folder / "outbox" / "email" / "run1.jsonl")
        assert [m["decision_id"] for m in email] == ["run-0", "run-2"]
        assert repair_outbox(folder) == []  # done once
