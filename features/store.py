"""The local events store: Parquet partitioned by month, plus one file per dimension table.

Layout under ``store_dir``::

    events/month=202501/part-....parquet   # hive partitions: a time range reads only its months
    customers.parquet  products.parquet  stores.parquet

Writes are atomic: ``replace`` builds the whole store beside the old one and swaps it in;
``append`` writes each new part under a temporary name and renames it into place.
"""

from __future__ import annotations

import os
import uuid
from datetime import datetime
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from features.atomic import atomic_path, write_parquet_atomic
from features.schema import DIMENSION_TABLES, EVENTS, TABLES, as_contract_frame, empty_frame
from features.sources import SourceData

WriteMode = Literal["replace", "append"]
_PARTITIONING = ds.partitioning(pa.schema([("month", pa.int32())]), flavor="hive")


class StoreMissingError(FileNotFoundError):
    """The events store has not been written yet."""


def _events_table(events: pd.DataFrame) -> pa.Table:
    """Events as an Arrow table with the contract schema plus the ``month`` partition key."""
    cols = [c for c in EVENTS.names if c in events.columns]
    table = pa.Table.from_pandas(events[cols], preserve_index=False).cast(_storage_schema(cols))
    for i, name in enumerate(EVENTS.names):  # every contract column is stored, empty if absent
        if name not in cols:
            field = _storage_schema([name]).field(0)
            table = table.add_column(i, field, pa.nulls(len(table), field.type))
    ts = events["ts"]
    month = (ts.dt.year * 100 + ts.dt.month).to_numpy(dtype=np.int32)
    return table.append_column("month", pa.array(month, pa.int32()))


def _storage_schema(cols: list[str]) -> pa.Schema:
    fields = []
    for c in cols:
        col = EVENTS.column(c)
        typ = pa.dictionary(pa.int32(), pa.string()) if col.kind == "category" else col.arrow_type
        fields.append(pa.field(c, typ))
    return pa.schema(fields)


def _write_events(table: pa.Table, folder: Path) -> None:
    ds.write_dataset(
        table,
        folder,
        format="parquet",
        partitioning=_PARTITIONING,
        basename_template=f"part-{uuid.uuid4().hex[:12]}-{{i}}.parquet",
        existing_data_behavior="overwrite_or_ignore",
        max_rows_per_group=1 << 20,
    )


def write_store(data: SourceData, store_dir: Path | str, mode: WriteMode = "replace") -> Path:
    """Write validated, identity-resolved tables into the store.

    ``replace`` swaps in a complete new store at once. ``append`` adds events as new
    parts and upserts dimension rows by id (new rows win).
    """
    store_dir = Path(store_dir)
    if mode == "replace":
        with atomic_path(store_dir) as tmp:
            tmp.mkdir(parents=True)
            _write_events(_events_table(data.events), tmp / "events")
            for name in DIMENSION_TABLES:
                _write_dimension(getattr(data, name), tmp / f"{name}.parquet", name)
        return store_dir
    if mode != "append":
        raise ValueError(f"mode must be 'replace' or 'append', got {mode!r}")
    store_dir.mkdir(parents=True, exist_ok=True)
    staging = store_dir / f".append-{uuid.uuid4().hex[:8]}"
    try:
        _write_events(_events_table(data.events), staging)
        for part in sorted(staging.rglob("*.parquet")):
            dest = store_dir / "events" / part.relative_to(staging)
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(part, dest)
    finally:
        import shutil

        shutil.rmtree(staging, ignore_errors=True)
    for name in DIMENSION_TABLES:
        new = getattr(data, name)
        path = store_dir / f"{name}.parquet"
        if path.exists() and len(new):
            old = read_table(store_dir, name)
            key = TABLES[name].key
            new = pd.concat([old[~old[key].isin(new[key])], new], ignore_index=True)
        elif path.exists():
            continue
        _write_dimension(new, path, name)
    return store_dir


def _write_dimension(df: pd.DataFrame, path: Path, name: str) -> None:
    schema = TABLES[name]
    cols = [c for c in schema.names if c in df.columns]
    table = pa.Table.from_pandas(df[cols], preserve_index=False)
    write_parquet_atomic(table.cast(schema.arrow_schema(cols)), path)


def _month_key(t: datetime | pd.Timestamp) -> int:
    t = pd.Timestamp(t)
    return t.year * 100 + t.month


def _to_utc(t: datetime | str | pd.Timestamp) -> pd.Timestamp:
    t = pd.Timestamp(t)
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")


def events_dataset(store_dir: Path | str) -> ds.Dataset:
    """The events store as a pyarrow dataset (lazy; for engines that scan it themselves)."""
    folder = Path(store_dir) / "events"
    if not folder.exists():
        raise StoreMissingError(
            f"no events store at {folder}: load data first (e.g. `omni data synth` or "
            "`omni data load PATH`)"
        )
    schema = _storage_schema(EVENTS.names).append(pa.field("month", pa.int32()))
    return ds.dataset(folder, schema=schema, format="parquet", partitioning=_PARTITIONING)


def read_events(
    store_dir: Path | str,
    start: datetime | str | None = None,
    end: datetime | str | None = None,
    columns: list[str] | None = None,
) -> pd.DataFrame:
    """Events with ``start <= ts < end`` (either bound optional), reading only their months."""
    dataset = events_dataset(store_dir)
    flt = None
    if start is not None:
        start = _to_utc(start)
        flt = (ds.field("month") >= _month_key(start)) & (ds.field("ts") >= pa.scalar(start))
    if end is not None:
        end = _to_utc(end)
        cond = (ds.field("month") <= _month_key(end)) & (ds.field("ts") < pa.scalar(end))
        flt = cond if flt is None else flt & cond
    wanted = columns or EVENTS.names
    present = [n for n in wanted if n in dataset.schema.names]
    frame = dataset.to_table(columns=present, filter=flt).to_pandas()
    for name in wanted:  # columns never written (all empty) still come back, as nulls
        if name not in frame.columns:
            frame[name] = pd.Series(None, index=frame.index, dtype=_pandas_dtype(name))
    return as_contract_frame(frame[wanted], EVENTS)


def _pandas_dtype(name: str) -> str:
    kind = EVENTS.column(name).kind
    return {"int": "Int64", "float": "float64", "bool": "boolean"}.get(kind, "str")


def read_table(store_dir: Path | str, name: str) -> pd.DataFrame:
    """A dimension table from the store (empty with contract columns if never written)."""
    path = Path(store_dir) / f"{name}.parquet"
    if not path.exists():
        return empty_frame(TABLES[name])
    return as_contract_frame(pq.read_table(path).to_pandas(), TABLES[name])


def read_store(store_dir: Path | str) -> SourceData:
    """The whole store in memory."""
    tables = {name: read_table(store_dir, name) for name in DIMENSION_TABLES}
    return SourceData(events=read_events(store_dir), name=str(store_dir), **tables)
