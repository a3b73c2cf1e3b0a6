"""Replay a contract events file against a running service's POST /events.

The file is read and checked as `omni data load` reads it, and every event gets the id a
file load gives it (derived over the whole file, so identical lines stay distinct and a
re-run adds nothing). Batches are retried on connection errors, 5xx and 503 with
backoff; a 400 is not retried (its detail is reported with the batch's rows).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

TRIES = 5


@dataclass
class SendResult:
    """What a replay did."""

    sent: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    problems: list[str] = field(default_factory=list)  # "rows a-b: detail" per refused batch
    seconds: float = 0.0

    def line(self) -> str:
        rate = self.sent / self.seconds if self.seconds else 0.0
        return (
            f"sent {self.sent:,} events: {self.accepted:,} accepted, {self.duplicates:,} "
            f"duplicates, {self.rejected:,} rejected in {self.seconds:.1f} s ({rate:,.0f} events/s)"
        )


def file_events(path: Path) -> pd.DataFrame:
    """The file's events as a file load checks them (DataError naming row and column),
    each with its event id."""
    from features.sources.files import load_files
    from features.store.event_ids import assign_event_ids

    return assign_event_ids(load_files({"events": path}).data.events)


def request_bodies(events: pd.DataFrame, batch: int) -> Iterator[tuple[int, str]]:
    """(first row, JSON body) per batch: ISO timestamps, null fields left out."""
    frame = events.astype(object).where(events.notna(), None)
    frame["ts"] = pd.DatetimeIndex(events["ts"]).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    for lo in range(0, len(frame), batch):
        records = frame.iloc[lo : lo + batch].to_dict(orient="records")
        body = [{k: v for k, v in r.items() if v is not None} for r in records]
        yield lo, json.dumps({"events": body})


def send_events(
    events: pd.DataFrame,
    url: str,
    batch: int = 500,
    rate: float | None = None,
    token: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> SendResult:
    """POST events (:func:`file_events`) to ``url``/events; ``rate``: at most that many
    events a second; ``progress`` is called with the events done after each batch."""
    import requests

    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    result, session, t0 = SendResult(), requests.Session(), time.perf_counter()
    for lo, body in request_bodies(events, batch):
        n = min(batch, len(events) - lo)
        answer = _post(session, f"{url.rstrip('/')}/events", body, headers)
        result.sent += n
        if answer.status_code == 200:
            got = answer.json()
            result.accepted += got["accepted"]
            result.duplicates += got["duplicates"]
        else:
            result.rejected += n
            detail = _detail(answer)
            result.problems.append(f"rows {lo + 1}-{lo + n}: {answer.status_code} {detail}")
        if progress:
            progress(result.sent)
        if rate:  # pace: the events so far should have taken sent / rate seconds
            time.sleep(max(0.0, result.sent / rate - (time.perf_counter() - t0)))
    result.seconds = time.perf_counter() - t0
    return result


def _post(session, url: str, body: str, headers: dict):
    """POST with retries on connection errors, 5xx and 503 (backoff 0.5, 1, 2, 4 s)."""
    import requests

    for attempt in range(TRIES):
        last = attempt == TRIES - 1
        try:
            answer = session.post(url, data=body, headers=headers, timeout=30)
        except requests.ConnectionError:
            if last:
                raise
        else:
            if answer.status_code < 500 or last:
                return answer
        time.sleep(0.5 * 2**attempt)
    raise AssertionError("unreachable")


def _detail(answer) -> str:
    try:
        return str(answer.json().get("detail", answer.text))
    except ValueError:
        return answer.text[:200]
