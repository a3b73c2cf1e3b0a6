"""The event journal: live events on local disk, durable before POST /events answers.

Append-only segments ``<seq:012d>.jsonl`` under one folder, one JSON object per event per
line. A batch is one ``write`` of all its lines, then ``fsync``: when :meth:`Journal.append`
returns, the events survive a crash. A crash mid-write can only leave a torn last line in
the newest segment; it was never acknowledged, and opening the journal as its writer cuts
it off. One process writes (an exclusive ``flock`` on ``.lock``); compaction may read the
segments the writer has closed (:meth:`Journal.sealed`) at the same time.
"""

from __future__ import annotations

import fcntl
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl

from features.atomic import fsync_path
from features.contract.schema import EVENTS, as_contract_frame
from features.store.parts import RAW_CUSTOMER_ID
from serving.live.id_set import GrowingEventIdSet

SEGMENT_BYTES = 64 * 2**20
"""A segment is closed and a new one started once it is larger than this."""
COLUMNS = [*EVENTS.names, RAW_CUSTOMER_ID]
"""What a journal line holds: the contract's fields (``customer_id`` resolved,
``event_id`` set) and the customer id as the source gave it."""
LOCK = ".lock"


class JournalError(ValueError):
    """The journal cannot be used: held by another writer, or a damaged line (named)."""


class JournalBusy(JournalError):
    """Another process writes the journal (it may stop: a passing reason)."""


def lines(events: pd.DataFrame) -> bytes:
    """The batch as JSON lines (timestamps ISO 8601 UTC with microseconds, nulls null,
    text as UTF-8). Polars writes them: ``json.dumps`` per row took 60 ms of every
    1,000-event POST /events, under the worker's GIL; this takes 3."""
    frame = pl.from_pandas(events.reindex(columns=COLUMNS))
    ts = pl.col("ts").dt.convert_time_zone("UTC").dt.strftime("%Y-%m-%dT%H:%M:%S.%6fZ")
    return frame.with_columns(ts).write_ndjson().encode()


_SCHEMA = {
    column: pl.Float64 if column in ("quantity", "amount", "discount") else pl.String
    for column in COLUMNS
}  # how a journal line is read: numbers as float64, everything else (ts too) as text


def parse_lines(data: bytes, where: str, torn_tail: bool = False) -> pd.DataFrame:
    """Journal lines (as :func:`lines` writes them) as a frame in contract dtypes; a bad
    line is a :class:`JournalError` naming ``where`` and the line, except the last one
    when ``torn_tail`` (a writer mid-append: it was never acknowledged, and is left out).
    Polars parses them; only when it refuses the data are the lines read one by one (to
    name the bad line, or to take what only Python's JSON reader reads)."""
    if torn_tail:
        data = data[: data.rfind(b"\n") + 1]
    if not data.strip():
        return journal_frame([])
    try:
        frame = pl.read_ndjson(io.BytesIO(data), schema=_SCHEMA).to_pandas()
    except pl.exceptions.PolarsError:
        return journal_frame(_records(data, where))
    return _typed(frame)


def _records(data: bytes, where: str) -> list[dict]:
    """The JSON records of journal lines; a bad line is a :class:`JournalError` naming
    ``where`` and the line."""
    records = []
    for number, line in enumerate(data.split(b"\n"), start=1):
        if not line:
            continue
        try:
            records.append(json.loads(line))
        except ValueError:
            raise JournalError(f"{where}, line {number}: not a journal line") from None
    return records


def journal_frame(records: list[dict]) -> pd.DataFrame:
    """Journal records in contract dtypes (plus the raw customer id)."""
    return _typed(pd.DataFrame.from_records(records, columns=COLUMNS))


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    """A frame of journal columns in contract dtypes (plus the raw customer id)."""
    for column in COLUMNS:
        kind = "string" if column == RAW_CUSTOMER_ID else EVENTS.column(column).kind
        if kind == "string":
            frame[column] = frame[column].astype("str")
        elif kind in ("int", "float"):
            frame[column] = pd.to_numeric(frame[column]).astype("float64")
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True).dt.as_unit("us")
    return as_contract_frame(frame, EVENTS)


class Journal:
    """Append-only event journal under ``folder`` (see the module docstring)."""

    shared = False  # one worker writes it (RedisJournal: every worker)

    def __init__(self, folder: Path, writer: bool = True) -> None:
        """``writer``: take the writer's lock (JournalError if another process holds it)
        and cut off a torn last line; otherwise a read-only view."""
        self.folder = Path(folder)
        self.writer = writer
        self._lock_fd: int | None = None
        self._file = None
        if writer:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(self.folder / LOCK, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(self._lock_fd)
                self._lock_fd = None
                raise JournalBusy(
                    f"{self.folder} is written by another process (one service per home "
                    "takes live events)"
                ) from None
            self._cut_torn_tail()
        self._ids = GrowingEventIdSet(self.read()["event_id"] if self.exists else ())

    @property
    def exists(self) -> bool:
        return self.folder.is_dir()

    def segments(self) -> list[Path]:
        """Every segment, oldest first."""
        if not self.exists:
            return []
        return sorted(p for p in self.folder.glob("*.jsonl") if p.stem.isdigit())

    def _cut_torn_tail(self) -> None:
        segments = self.segments()
        if not segments:
            return
        newest = segments[-1]
        data = newest.read_bytes()
        keep = data.rfind(b"\n") + 1
        if keep < len(data):
            with open(newest, "r+b") as f:
                f.truncate(keep)
                f.flush()
                os.fsync(f.fileno())

    def _open_segment(self) -> None:
        """The newest segment for appending (a new one when there is none or it is full)."""
        segments = self.segments()
        if segments and segments[-1].stat().st_size < SEGMENT_BYTES:
            path = segments[-1]
        else:
            seq = int(segments[-1].stem) + 1 if segments else 1
            path = self.folder / f"{seq:012d}.jsonl"
        created = not path.exists()
        self._file = open(path, "ab")  # noqa: SIM115 (kept open between appends)
        if created:
            fsync_path(self.folder)

    def append(self, events: pd.DataFrame) -> None:
        """Write the events (contract columns, ``event_id``, resolved ``customer_id`` and
        ``raw_customer_id``) and sync them to disk before returning."""
        if not self.writer:
            raise JournalError("a read-only journal view cannot append")
        if not len(events):
            return
        if self._file is None or self._file.tell() >= SEGMENT_BYTES:
            self._close_file()
            self._open_segment()
        self._file.write(lines(events))
        self._file.flush()
        os.fsync(self._file.fileno())
        self._ids.add(events["event_id"])

    def known(self, event_ids: pd.Series) -> np.ndarray:
        """bool per id: already journaled."""
        return self._ids.contains(event_ids)

    @property
    def count(self) -> int:
        """Events journaled (all segments)."""
        return len(self._ids)

    def read(self, segments: Sequence[Path] | None = None) -> pd.DataFrame:
        """The journaled events (all segments, or those given) in append order, contract
        dtypes. A torn last line of the newest segment (a writer mid-append) is skipped;
        a bad line elsewhere is a :class:`JournalError` naming the file and line."""
        chosen = self.segments() if segments is None else list(segments)
        newest = self.segments()[-1:] if segments is None else []
        frames = [parse_lines(p.read_bytes(), str(p), torn_tail=p in newest) for p in chosen]
        return pd.concat(frames, ignore_index=True) if frames else journal_frame([])

    def replay(self) -> tuple[pd.DataFrame, str]:
        """Every journaled event, and the position after them (the file journal has
        none: "0"), as :meth:`RedisJournal.replay` gives them."""
        return self.read(), "0"

    def seal(self) -> list[Path]:
        """Close the open segment (the next append starts a new one); the sealed ones."""
        self._close_file()
        segments = self.segments()
        if segments and segments[-1].stat().st_size > 0:
            seq = int(segments[-1].stem) + 1
            (self.folder / f"{seq:012d}.jsonl").touch()
            fsync_path(self.folder)
        return self.sealed()

    def sealed(self) -> list[Path]:
        """Segments no writer appends to any more: all but the newest (the newest too when
        no process holds the writer's lock)."""
        segments = self.segments()
        if not segments:
            return []
        return segments if not self._writer_active() else segments[:-1]

    def _writer_active(self) -> bool:
        if self.writer:
            return True
        try:
            fd = os.open(self.folder / LOCK, os.O_RDWR)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # closing releases a lock taken here
        return False

    def remove(self, segments: Sequence[Path]) -> None:
        """Delete segments (compacted into the store); their ids stay known here."""
        for path in segments:
            path.unlink(missing_ok=True)
        if segments:
            fsync_path(self.folder)

    def _close_file(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def leads(self, role: str, ttl_s: float) -> bool:
        """Whether this worker holds ``role`` (see RedisJournal.leads): the writer of a
        local journal is the only worker, so it always does."""
        return self.writer

    def close(self) -> None:
        """Close the open segment and release the writer's lock."""
        self._close_file()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
