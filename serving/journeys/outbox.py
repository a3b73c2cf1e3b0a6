"""The outbox: what each channel's sending system has to send, one JSON Lines file per
run and channel (``outbox/<channel>/<run_id>.jsonl``, written atomically), and delivery of
such a file by HTTP POST in batches that records how far it got, so a file is never
posted twice and an interrupted delivery resumes where it stopped (docs/journeys.md)."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import requests

from features.atomic import atomic_path

OUTBOX = "outbox"
"""The outbox's folder in the journeys folder."""
FIELDS = (
    "decision_id",
    "customer_id",
    "journey",
    "channel",
    "send_at",
    "products",
    "churn_probability",
    "channel_probability",
)
"""The fields of one message, in this order."""
DELIVERED = ".delivered"
"""Suffix of the marker beside a posted file: how many of its lines were delivered."""


class OutboxError(RuntimeError):
    """An outbox file that could not be delivered; the message names the URL and the file."""


def outbox_dir(journeys_dir: Path) -> Path:
    """Where the outbox of a journeys folder lives."""
    return Path(journeys_dir) / OUTBOX


def write_outbox(journeys_dir: Path, decisions: pd.DataFrame, run_id: str) -> dict[str, Path]:
    """The sent and delayed decisions as ``outbox/<channel>/<run_id>.jsonl``, one message
    per line (:data:`FIELDS`, ``send_at`` in ISO-8601 UTC); returns the file per channel
    (channels with nothing to send get no file)."""
    send = decisions[decisions["status"].isin(("sent", "delayed"))]
    files: dict[str, Path] = {}
    for channel, rows in send.groupby("channel", sort=True):
        messages = rows[list(FIELDS)].assign(send_at=_iso_utc(rows["send_at"]))
        text = messages.to_json(
            orient="records", lines=True, force_ascii=False, double_precision=15
        )
        target = outbox_dir(journeys_dir) / str(channel) / f"{run_id}.jsonl"
        with atomic_path(target) as tmp:
            tmp.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
        files[str(channel)] = target
    return files


def _iso_utc(ts: pd.Series) -> pd.Series:
    """``2026-03-10T08:00:00Z`` (with microseconds only where there are some)."""
    utc = pd.to_datetime(ts, utc=True)
    whole = utc.dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    fine = utc.dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return whole.where(utc.dt.microsecond == 0, fine)


def delivered_marker(file: Path) -> Path:
    """The marker of ``file``'s delivery: ``<file>.delivered``, holding a line count."""
    return file.with_name(file.name + DELIVERED)


def delivered_count(file: Path) -> int:
    """How many of ``file``'s lines were delivered already (0 when never posted)."""
    marker = delivered_marker(Path(file))
    return int(marker.read_text().strip() or 0) if marker.exists() else 0


def post_outbox(
    url: str,
    file: Path,
    retries: int = 3,
    timeout_s: float = 10,
    batch: int = 500,
    backoff_s: float = 0.5,
) -> int:
    """POST ``file``'s messages not delivered yet to ``url`` as JSON arrays of up to
    ``batch``; returns how many were delivered by this call.

    Connection errors, timeouts and 5xx answers are retried ``retries`` times, waiting
    ``backoff_s``, then twice as long each time; a 4xx is not retried. After each accepted
    batch the marker (:func:`delivered_marker`) is rewritten atomically, so posting the
    same file again sends only what is left. Each request carries an ``Idempotency-Key``
    (file name and first line) for a receiver to drop a batch it saw before a crash.
    :class:`OutboxError` names the URL and the file when a batch cannot be delivered."""
    file = Path(file)
    lines = [line for line in file.read_text(encoding="utf-8").splitlines() if line.strip()]
    done = delivered_count(file)
    start = done
    with requests.Session() as session:
        while start < len(lines):
            chunk = lines[start : start + batch]
            body = ("[" + ",".join(chunk) + "]").encode("utf-8")
            headers = {
                "Content-Type": "application/json",
                "Idempotency-Key": f"{file.parent.name}/{file.name}:{start}",
            }
            where = f"messages {start + 1}-{start + len(chunk)} of {len(lines)} in {file}"
            _post(session, url, body, headers, where, retries, timeout_s, backoff_s)
            start += len(chunk)
            with atomic_path(delivered_marker(file)) as tmp:
                tmp.write_text(f"{start}\n")
    return max(start - done, 0)


def _post(
    session: requests.Session,
    url: str,
    body: bytes,
    headers: dict[str, str],
    where: str,
    retries: int,
    timeout_s: float,
    backoff_s: float,
) -> None:
    """One batch, retried on connection errors, timeouts and 5xx; :class:`OutboxError`
    when refused (4xx) or after the last retry."""
    problem = ""
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(backoff_s * 2 ** (attempt - 1))
        try:
            answer = session.post(url, data=body, headers=headers, timeout=timeout_s)
        except (requests.ConnectionError, requests.Timeout) as exc:
            problem = f"{type(exc).__name__}: {exc}"
            continue
        if answer.ok:
            return
        problem = f"HTTP {answer.status_code} {answer.reason}: {answer.text[:200]}".rstrip(": ")
        if answer.status_code < 500:
            raise OutboxError(f"{url} refused {where}: {problem} (not retried)")
    raise OutboxError(
        f"could not deliver {where} to {url} after {retries + 1} attempts: {problem} "
        "(posting the file again resumes here)"
    )


def pending_files(journeys_dir: Path, channel: str) -> list[Path]:
    """``channel``'s outbox files with lines not delivered yet, oldest run first."""
    folder = outbox_dir(journeys_dir) / channel
    files = sorted(folder.glob("*.jsonl")) if folder.is_dir() else []
    return [f for f in files if delivered_count(f) < _line_count(f)]


def _line_count(file: Path) -> int:
    with file.open("rb") as f:
        return sum(1 for line in f if line.strip())


def deliver(
    journeys_dir: Path, webhooks: dict[str, str], retries: int = 3
) -> dict[str, tuple[int, int]]:
    """POST every channel's pending outbox files to its webhook; channel -> (files,
    messages) delivered. Stops at the first file that cannot be delivered
    (:class:`OutboxError`): what went before stays delivered and is not sent again."""
    repair_outbox(journeys_dir)
    done: dict[str, tuple[int, int]] = {}
    for channel, url in sorted(webhooks.items()):
        files = pending_files(journeys_dir, channel)
        sent = sum(post_outbox(url, f, retries=retries) for f in files)
        done[channel] = (len(files), sent)
    return done


def repair_outbox(journeys_dir: Path) -> list[str]:
    """Write the outbox files of logged runs that lack them (a run is logged first, then
    its outbox: a kill in between leaves the messages decided but not yet out). Returns
    the run ids repaired."""
    import pyarrow.parquet as pq

    from serving.journeys.decisions import decisions_dir

    runs = sorted(decisions_dir(journeys_dir).glob("*.parquet"))
    have = {p.stem for p in outbox_dir(journeys_dir).glob("*/*.jsonl")}
    repaired = []
    for path in runs:
        if path.stem in have:
            continue
        decisions = pq.read_table(path).to_pandas()
        if write_outbox(journeys_dir, decisions, path.stem):
            repaired.append(path.stem)
    return repaired
