"""Build the customer feature table from the events store and write it as Parquet.

Reads only the months the cutoff needs (``(as_of - lookback, as_of)``; no feature looks
further back, see :mod:`features.registry`), builds the features, and writes them
atomically with the cutoff, windows and feature list in the Parquet schema metadata, so
a model can check that a table matches what it was trained on.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa

from features.atomic import write_parquet_atomic
from features.customer_features import build_customer_features
from features.cutoffs import parse_cutoff
from features.registry import DEFAULT_WINDOWS, check_windows, customer_features
from features.store.events import read_events, read_table

METADATA_KEY = b"omni.features"
EVENT_COLUMNS = ["customer_id", "ts", "channel", "event_type", "order_id", "store_id"]
EVENT_COLUMNS += ["amount", "discount"]


@dataclass
class BuildResult:
    """What a build read and wrote."""

    path: Path
    as_of: pd.Timestamp
    windows: tuple[int, ...]
    n_customers: int
    n_features: int
    n_events: int
    seconds: dict[str, float]
    table: pd.DataFrame


def default_path(features_dir: Path, as_of: pd.Timestamp) -> Path:
    """Where a cutoff's customer features live by default."""
    stamp = (
        as_of.strftime("%Y-%m-%d")
        if as_of == as_of.normalize()
        else as_of.strftime("%Y%m%dT%H%M%S")
    )
    return Path(features_dir) / f"customer_features_{stamp}.parquet"


def build_from_store(
    store_dir: Path,
    as_of: str | pd.Timestamp,
    out: Path,
    windows: Sequence[int] = DEFAULT_WINDOWS,
    progress: Callable[[str], None] | None = None,
) -> BuildResult:
    """Read the months ``as_of`` needs, build the customer features, write them to ``out``."""
    t = parse_cutoff(as_of)
    windows = check_windows(windows)
    seconds: dict[str, float] = {}
    table, n_events = features_from_store(store_dir, t, windows, progress, seconds)
    return write_result(table, out, t, windows, n_events, seconds)


def features_from_store(
    store_dir: Path,
    as_of: pd.Timestamp,
    windows: Sequence[int] = DEFAULT_WINDOWS,
    progress: Callable[[str], None] | None = None,
    seconds: dict[str, float] | None = None,
) -> tuple[pd.DataFrame, int]:
    """The customer features as of ``as_of`` from the events its longest window needs,
    and how many events that was (``seconds`` gets the read and build times)."""
    tell = progress or (lambda _: None)
    seconds = {} if seconds is None else seconds
    t0 = time.perf_counter()
    start = as_of - pd.Timedelta(days=max(windows))
    events = read_events(store_dir, start=start, end=as_of, columns=EVENT_COLUMNS)
    customers = read_table(store_dir, "customers")
    seconds["read"] = time.perf_counter() - t0
    tell(f"read {len(events):,} events from {start:%Y-%m-%d} to {as_of:%Y-%m-%d}")
    t0 = time.perf_counter()
    table = build_customer_features(events, customers, as_of, windows, progress=progress)
    seconds["build"] = time.perf_counter() - t0
    return table, len(events)


def write_result(
    table: pd.DataFrame,
    out: Path,
    as_of: pd.Timestamp,
    windows: tuple[int, ...],
    n_events: int,
    seconds: dict[str, float],
) -> BuildResult:
    """Write a built table (:func:`write_features`, timed into ``seconds``) and describe
    the build: the last step of the local and the Spark build alike."""
    t0 = time.perf_counter()
    write_features(table, out, as_of, windows, n_events=n_events)
    seconds["write"] = time.perf_counter() - t0
    return BuildResult(
        path=Path(out),
        as_of=as_of,
        windows=windows,
        n_customers=len(table),
        n_features=table.shape[1],
        n_events=n_events,
        seconds=seconds,
        table=table,
    )


def write_features(
    table: pd.DataFrame, out: Path, as_of: pd.Timestamp, windows: Sequence[int], **extra
) -> Path:
    """Write a feature table atomically, with cutoff, windows and features in its metadata."""
    arrow = pa.Table.from_pandas(table, preserve_index=True)
    meta = {
        "table": "customer_features",
        "as_of": as_of.isoformat(),
        "windows": list(windows),
        "lookback_days": max(windows),
        "features": [{"name": f.name, "dtype": f.dtype} for f in customer_features(windows)],
        **extra,
    }
    arrow = arrow.replace_schema_metadata(
        {**(arrow.schema.metadata or {}), METADATA_KEY: json.dumps(meta).encode()}
    )
    return write_parquet_atomic(arrow, out)


def read_metadata(path: Path) -> dict:
    """The cutoff, windows and feature list stored with a feature table."""
    import pyarrow.parquet as pq

    meta = pq.read_schema(path).metadata or {}
    if METADATA_KEY not in meta:
        raise ValueError(f"{path} is not a feature table written by omni (no {METADATA_KEY!r})")
    return json.loads(meta[METADATA_KEY])
