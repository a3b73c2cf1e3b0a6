"""The recommendation log: the items of every ``/recommend`` answer, kept so that a click
or purchase carrying the answer's ``recommendation_id`` is attributed to what was shown
(``omni report recs``).

A worker keeps the answers of the last :data:`FLUSH_EVERY_S` seconds in memory (one
tuple per answer: a request adds about a microsecond) and writes them, off the request
path, as one Parquet file under ``<home>/recommendations/``: written under a temporary
name, then renamed, so a reader sees whole files only. The folder is bounded: after each
write, the oldest files go while the total is over ``OMNI_REC_LOG_MAX_MB``. A killed
worker loses at most its last few seconds of log, never an answer.
"""

from __future__ import annotations

import itertools
import os
import secrets
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

FLUSH_EVERY_S = 5.0
"""How often a worker writes what it served (and so at most what a kill loses)."""
_SUFFIX = ".parquet"

SCHEMA = pa.schema(
    [
        pa.field("recommendation_id", pa.string()),
        pa.field("served_at", pa.timestamp("us", tz="UTC")),
        pa.field("customer_id", pa.string()),
        pa.field("channel", pa.string()),
        pa.field("store_id", pa.string()),
        pa.field("cold_start", pa.bool_()),
        pa.field("model_version", pa.string()),
        pa.field("rank", pa.int16()),
        pa.field("product_id", pa.string()),
        pa.field("reason", pa.string()),
        pa.field("score", pa.float32()),
    ]
)
"""One row per product served: the answer's columns repeated, ``rank`` 1 = first shown."""


class Answer(NamedTuple):
    """One ``/recommend`` answer as the log keeps it until the next write."""

    recommendation_id: str
    served_at: float  # seconds since the epoch
    customer_id: str
    channel: str | None
    store_id: str | None
    cold_start: bool
    model_version: str | None
    product_ids: list[str]
    reasons: list[str]
    scores: list[float]


class RecommendationLog:
    """A worker's recommendation log: ids for its answers, the answers until written, and
    the bounded folder they are written to."""

    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self._prefix = secrets.token_hex(6)  # 48 random bits per worker start
        self._numbers = itertools.count(1)
        self._answers: list[Answer] = []
        self._lock = threading.Lock()  # the writer thread swaps the list out

    def new_id(self) -> str:
        """An id no other answer has: this worker's random prefix and a counter."""
        return f"{self._prefix}-{next(self._numbers):x}"

    def add(self, answer: Answer) -> None:
        """Keep one answer until the next :meth:`write`."""
        with self._lock:
            self._answers.append(answer)

    def write(self) -> Path | None:
        """Write the answers kept since the last call as one file (temporary name, one
        rename), then remove the oldest files over the bound; None if there were none."""
        with self._lock:
            answers, self._answers = self._answers, []
        if not answers:
            return None
        table = answers_table(answers)
        self.directory.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(answers[0].served_at))
        name = f"recs-{stamp}-{os.getpid()}-{self._prefix}-{next(self._numbers):x}{_SUFFIX}"
        path = self.directory / name
        tmp = self.directory / f".{name}.tmp"
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, path)
        prune(self.directory, self.max_bytes)
        return path


def answers_table(answers: list[Answer]) -> pa.Table:
    """The log's rows of ``answers`` (one per item served), built column by column."""
    counts = np.fromiter((len(a.product_ids) for a in answers), np.int64, len(answers))

    def repeated(values: list, typ: pa.DataType) -> pa.Array:
        return pa.array(values, typ).take(pa.array(np.repeat(np.arange(len(answers)), counts)))

    ranks = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts) + 1
    chain = itertools.chain.from_iterable
    served = (np.array([a.served_at for a in answers]) * 1e6).astype("int64")
    columns = [
        repeated([a.recommendation_id for a in answers], pa.string()),
        pa.array(np.repeat(served, counts), pa.timestamp("us", tz="UTC")),
        repeated([a.customer_id for a in answers], pa.string()),
        repeated([a.channel for a in answers], pa.string()),
        repeated([a.store_id for a in answers], pa.string()),
        pa.array(np.repeat([a.cold_start for a in answers], counts), pa.bool_()),
        repeated([a.model_version for a in answers], pa.string()),
        pa.array(ranks, pa.int16()),
        pa.array(list(chain(a.product_ids for a in answers)), pa.string()),
        pa.array(list(chain(a.reasons for a in answers)), pa.string()),
        pa.array(list(chain(a.scores for a in answers)), pa.float32()),
    ]
    return pa.Table.from_arrays(columns, schema=SCHEMA)


def log_files(directory: Path) -> list[Path]:
    """The log's written files, oldest first (their names start with the time)."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.name.startswith("recs-"))


def prune(directory: Path, max_bytes: int) -> int:
    """Remove the oldest files while the log is over ``max_bytes`` (the newest file always
    stays); returns how many went. Several workers may prune at once: a file another
    removed first is skipped."""
    files = log_files(directory)
    sizes = []
    for path in files:
        try:
            sizes.append(path.stat().st_size)
        except FileNotFoundError:
            sizes.append(0)
    total, removed = sum(sizes), 0
    for path, size in zip(files[:-1], sizes[:-1], strict=True):
        if total <= max_bytes:
            break
        path.unlink(missing_ok=True)
        total -= size
        removed += 1
    return removed


def read_log(directory: Path, since: datetime | None = None) -> pa.Table:
    """The log's rows served at or after ``since`` (all without it); empty with the log's
    columns when nothing was logged. A file pruned while being read: read the rest again."""
    import pyarrow.dataset as ds

    flt = None if since is None else ds.field("served_at") >= pa.scalar(since, SCHEMA[1].type)
    for attempt in range(3):
        files = [str(p) for p in log_files(directory)]
        if not files:
            return SCHEMA.empty_table()
        try:
            return ds.dataset(files, schema=SCHEMA, format="parquet").to_table(filter=flt)
        except FileNotFoundError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")
