"""The local events store: events as Parquet partitioned by month, one file per dimension
table, the identity graph, and a manifest that lists them all.

Layout under ``store_dir``::

    manifest.json                                  # the live files (features/store/manifest.py)
    events/month=202501/ev-<write>-0.parquet       # hive partitions: a range reads its months
    customers-<write>.parquet  products-<write>.parquet  stores-<write>.parquet
    identity-<write>.parquet                       # raw identifier tuples -> customer id

Every write, replace or append, writes its files under new names and then switches the
manifest with one rename, so a kill at any moment leaves the old or the new store.
Events carry an ``event_id`` (features/store/event_ids.py) and an append skips those already
stored. With identity resolution on, an append resolves against the graph of everything
loaded before and rewrites the stored parts whose events change customer id, in the same
switch: the store ends as if everything had been loaded at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal, TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from features.contract.schema import (
    DIMENSION_TABLES,
    EVENTS,
    TABLES,
    as_contract_frame,
    empty_frame,
)
from features.cutoffs import to_utc
from features.sources.base import SourceData
from features.store.customer_ids import add_links, restamp, rewrite_parts, stored_links
from features.store.event_ids import assign_event_ids
from features.store.identity import IdentityReport, graph_lookup, resolve_with_graph
from features.store.manifest import (
    EVENTS_DIR,
    Manifest,
    StoreBusyError,
    StoreFile,
    StoreMissingError,
    read_manifest,
    remove_unlisted,
    switch_manifest,
    sync_files,
    write_lock,
)
from features.store.parts import RAW_CUSTOMER_ID, PartWriter, events_table, parts_dataset

__all__ = [
    "StoreBusyError",
    "StoreMissingError",
    "StoreWrite",
    "WriteMode",
    "events_dataset",
    "read_events",
    "read_store",
    "read_table",
    "store_events",
    "store_exists",
    "write_store",
]

WriteMode = Literal["replace", "append"]
T = TypeVar("T")
_READ_ATTEMPTS = 3
_MADE_UP_ID = r"^U[0-9a-f]{16}$"  # ids resolution makes up (features.store.identity._stable_ids)


# ---------------------------------------------------------------- reading


def _live(store_dir: Path) -> Manifest:
    manifest = read_manifest(store_dir)
    if manifest is None:
        raise StoreMissingError(
            f"no events store at {store_dir}: load data first (e.g. `omni data synth` or "
            "`omni data load PATH`)"
        )
    return manifest


def store_exists(store_dir: Path | str) -> bool:
    """Whether events have been loaded into ``store_dir`` (with or without a manifest)."""
    return read_manifest(Path(store_dir)) is not None


def event_files(store_dir: Path | str) -> tuple[Path, list[Path]]:
    """The events folder (partition base) and the event parts the store's manifest lists,
    for engines that read the files themselves (Spark)."""
    store_dir = Path(store_dir)
    manifest = _live(store_dir)
    return store_dir / EVENTS_DIR, [store_dir / p.path for p in manifest.parts]


def table_file(store_dir: Path | str, name: str) -> Path | None:
    """The live file of dimension table ``name``; None if the store has none."""
    store_dir = Path(store_dir)
    manifest = read_manifest(store_dir)
    entry = manifest.tables.get(name) if manifest else None
    if entry is None and manifest is None and (store_dir / f"{name}.parquet").exists():
        entry = StoreFile(f"{name}.parquet")  # a store from before manifests, without events
    return store_dir / entry.path if entry else None


def events_dataset(store_dir: Path | str) -> ds.Dataset:
    """The events store as a pyarrow dataset (lazy; for engines that scan it themselves)."""
    store_dir = Path(store_dir)
    return parts_dataset(store_dir, _live(store_dir), EVENTS.names)


def month_key(t: datetime | pd.Timestamp) -> int:
    """The `month=` partition key of a time (202506 for June 2025)."""
    t = pd.Timestamp(t)
    return t.year * 100 + t.month


def _while_stable(store_dir: Path, read: Callable[[Manifest], T]) -> T:
    """``read(manifest)`` of the live manifest. A write that switches the manifest meanwhile
    removes the files it replaced: then read again, from the new manifest."""
    for attempt in range(_READ_ATTEMPTS):
        manifest = _live(store_dir)
        try:
            return read(manifest)
        except FileNotFoundError:
            if attempt == _READ_ATTEMPTS - 1 or read_manifest(store_dir) == manifest:
                raise
    raise AssertionError("unreachable")


def read_events(
    store_dir: Path | str,
    start: datetime | str | None = None,
    end: datetime | str | None = None,
    columns: list[str] | None = None,
    event_types: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Events with ``start <= ts < end`` (either bound optional) and, if given, of
    ``event_types``, reading only their months."""
    store_dir = Path(store_dir)
    flt = _events_filter(start, end, event_types)
    wanted = columns or EVENTS.names

    def read(manifest: Manifest) -> pa.Table:
        dataset = parts_dataset(store_dir, manifest, EVENTS.names)  # the filter needs ts
        return dataset.to_table(columns=wanted, filter=flt)

    frame = _while_stable(store_dir, read).to_pandas()
    return as_contract_frame(frame[wanted], EVENTS)


def map_event_batches(
    store_dir: Path | str,
    fn: Callable[[pd.DataFrame], T],
    start: datetime | str | None = None,
    columns: list[str] | None = None,
    batch_rows: int = 1_000_000,
) -> list[T]:
    """``fn`` of each batch of the events :func:`read_events` reads (the same rows and
    dtypes, at most ``batch_rows`` at a time), for a caller that keeps the events in a
    compact form: the store's events are never all in memory as one frame at once."""
    store_dir = Path(store_dir)
    flt = _events_filter(start, None, None)
    wanted = columns or EVENTS.names

    def read(manifest: Manifest) -> list[T]:
        dataset = parts_dataset(store_dir, manifest, EVENTS.names)
        batches = dataset.to_batches(columns=wanted, filter=flt, batch_size=batch_rows)
        return [fn(as_contract_frame(b.to_pandas()[wanted], EVENTS)) for b in batches]

    return _while_stable(store_dir, read)


def _events_filter(
    start: datetime | str | None, end: datetime | str | None, event_types: Sequence[str] | None
) -> ds.Expression | None:
    """The dataset filter of :func:`read_events` (month pruning, then ``ts``)."""
    flt = None
    if event_types is not None:
        flt = ds.field("event_type").cast(pa.string()).isin(list(event_types))
    if start is not None:
        start = to_utc(start)
        cond = (ds.field("month") >= month_key(start)) & (ds.field("ts") >= pa.scalar(start))
        flt = cond if flt is None else flt & cond
    if end is not None:
        end = to_utc(end)
        cond = (ds.field("month") <= month_key(end)) & (ds.field("ts") < pa.scalar(end))
        flt = cond if flt is None else flt & cond
    return flt


def read_table(store_dir: Path | str, name: str) -> pd.DataFrame:
    """A dimension table from the store (empty with contract columns if never written)."""
    store_dir = Path(store_dir)
    if read_manifest(store_dir) is None:
        path = table_file(store_dir, name)
        return empty_frame(TABLES[name]) if path is None else _read(store_dir, path.name, name)

    def read(manifest: Manifest) -> pd.DataFrame:
        entry = manifest.tables.get(name)
        return empty_frame(TABLES[name]) if entry is None else _read(store_dir, entry.path, name)

    return _while_stable(store_dir, read)


def read_store(store_dir: Path | str) -> SourceData:
    """The whole store in memory."""
    tables = {name: read_table(store_dir, name) for name in DIMENSION_TABLES}
    return SourceData(events=read_events(store_dir), name=str(store_dir), **tables)


# ---------------------------------------------------------------- writing
@dataclass
class StoreWrite:
    """What a write did: events added and skipped, stored events given another customer."""

    store_dir: Path
    mode: WriteMode
    n_events: int = 0  # events in the store after the write
    n_added: int = 0
    n_skipped: int = 0  # already in the store (append), by event_id
    n_repeated: int = 0  # an event_id given twice in the batch: the first one is kept
    n_restamped: int = 0  # stored events whose customer id the new links changed
    n_parts_rewritten: int = 0
    n_removed_files: int = 0  # leftovers of killed or superseded writes
    identity: IdentityReport | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    customer_ids: pd.Series | None = None  # of every input event, in input order

    def lines(self) -> list[str]:
        """Human lines for the load's report."""
        out = []
        if self.n_repeated:
            out.append(
                f"{self.n_repeated:,} events repeat an event_id given earlier in the batch: "
                "only the first of each was kept"
            )
        if self.mode == "append":
            out.append(
                f"appended {self.n_added:,} events; skipped {self.n_skipped:,} already in "
                "the store (same event_id)"
            )
        if self.n_restamped:
            out.append(
                f"{self.n_restamped:,} stored events moved to another customer id (the new "
                f"events linked their identifiers; {self.n_parts_rewritten} parts rewritten)"
            )
        return out


def _dimension(df: pd.DataFrame, name: str) -> pa.Table:
    schema = TABLES[name]
    cols = [c for c in schema.names if c in df.columns]
    return pa.Table.from_pandas(df[cols], preserve_index=False).cast(schema.arrow_schema(cols))


def _graph_table(graph: pd.DataFrame) -> pa.Table:
    return pa.Table.from_pandas(graph, preserve_index=False).cast(
        pa.schema([pa.field(c, pa.string()) for c in graph.columns])
    )


def _first_of_each_id(events: pd.DataFrame, given: np.ndarray) -> tuple[pd.DataFrame, int]:
    """The batch without events whose id an earlier one has. Only ids the source gave
    can repeat: derived ones differ by construction (they count identical rows)."""
    repeated = np.zeros(len(events), bool)
    if given.any():
        repeated[given] = events["event_id"][given].duplicated().to_numpy()
    if not repeated.any():
        return events, 0
    return events[~repeated].reset_index(drop=True), int(repeated.sum())


@dataclass
class _Stored:
    """The store before this write, as the write needs it."""

    manifest: Manifest | None
    event_ids: pa.Array
    graph: pd.DataFrame | None
    legacy_events: pd.DataFrame | None = None  # a pre-manifest store, converted in memory


def _load_stored(store_dir: Path, manifest: Manifest | None) -> _Stored:
    """Event ids and identity graph of the store ``manifest`` lists (None: no store)."""
    if manifest is None:
        return _Stored(None, pa.array([], pa.string()), None)
    if manifest.legacy:
        return _convert_legacy(store_dir, manifest)
    ids = parts_dataset(store_dir, manifest, ["event_id"]).to_table(columns=["event_id"])
    graph = None
    if manifest.identity is not None:
        graph = pq.read_table(store_dir / manifest.identity.path).to_pandas()
    return _Stored(manifest, ids["event_id"].combine_chunks(), graph)


def event_part_paths(store_dir: Path | str) -> list[str]:
    """The store's event part files (paths relative to it), as its manifest lists them now."""
    manifest = read_manifest(Path(store_dir))
    return [] if manifest is None else [p.path for p in manifest.parts]


def read_identity_graph(store_dir: Path | str) -> pd.DataFrame | None:
    """The store's identity graph (distinct identifier tuples and the customer each
    resolves to; see :func:`features.store.identity.resolve_with_graph`), None without one."""
    store_dir = Path(store_dir)
    manifest = read_manifest(store_dir)
    if manifest is None or manifest.identity is None:
        return None
    return pq.read_table(store_dir / manifest.identity.path).to_pandas()


def _convert_legacy(store_dir: Path, manifest: Manifest) -> _Stored:
    """Events of a pre-manifest store with what this version stores beside them.

    That store kept only resolved customer ids: an id resolution made up (``U…``) was
    no source's, any other is taken as the source's own. Event ids are derived from the
    rows as stored; the graph is their tuples with their stored customer ids.
    """
    events = read_events(store_dir)
    made_up = events["customer_id"].astype("str").str.fullmatch(_MADE_UP_ID).fillna(False)
    raw = events["customer_id"].astype("str").mask(made_up.to_numpy(bool))
    events = assign_event_ids(events.assign(customer_id=raw)).assign(
        customer_id=events["customer_id"], **{RAW_CUSTOMER_ID: raw}
    )
    ids = pa.array(events["event_id"].to_numpy(object), pa.string())
    return _Stored(manifest, ids, stored_links(events, RAW_CUSTOMER_ID), legacy_events=events)


def _dimensions(
    data: SourceData, store_dir: Path, stored: _Stored, mode: WriteMode, writer: PartWriter
) -> dict[str, StoreFile]:
    """Dimension tables after the write: replaced, or upserted by id on append."""
    old = stored.manifest.tables if stored.manifest is not None else {}
    out: dict[str, StoreFile] = {}
    for name in DIMENSION_TABLES:
        new = getattr(data, name)
        if mode == "append" and name in old:
            if not len(new):
                out[name] = old[name]
                continue
            before = _read(store_dir, old[name].path, name)
            key = TABLES[name].key
            new = pd.concat([before[~before[key].isin(new[key])], new], ignore_index=True)
        out[name] = writer.table(name, _dimension(new, name))
    return out


def _read(store_dir: Path, path: str, name: str) -> pd.DataFrame:
    return as_contract_frame(pq.read_table(store_dir / path).to_pandas(), TABLES[name])


def link_identities(
    events: pd.DataFrame, graph: pd.DataFrame | None, max_identity_component: int | None
) -> tuple[pd.DataFrame, pd.DataFrame, IdentityReport | None]:
    """New events with their customer ids (resolved against ``graph``, or as given), their
    raw customer ids kept beside; the graph with their tuples; the resolution's report.
    What an append load does, and what live events (serving.live.identity) go through."""
    raw = events["customer_id"] if "customer_id" in events.columns else None
    report = None
    if max_identity_component is None:  # ids as given: the graph only records them
        graph = add_links(graph, events)
    else:
        events, graph, report = resolve_with_graph(events, graph, max_identity_component)
    events[RAW_CUSTOMER_ID] = raw
    return events, graph.reset_index(drop=True), report


def _customer_ids(events: pd.DataFrame, graph: pd.DataFrame) -> pd.Series:
    """The customer id every input event has in the store now (skipped ones included), by
    its tuple of raw identifiers; where it has none, the customer_id it came with."""
    ids = pd.Series(graph_lookup(graph, events), index=events.index, dtype="str")
    given = events["customer_id"] if "customer_id" in events.columns else None
    return ids if given is None else ids.fillna(given.astype("str"))


def _stored_parts(
    store_dir: Path, stored: _Stored, graph: pd.DataFrame, writer: PartWriter
) -> tuple[list[StoreFile], int, int]:
    """The stored parts after the write (see :func:`features.store.customer_ids.rewrite_parts`);
    the parts of a store from before manifests are all rewritten, in this version's form."""
    if stored.legacy_events is not None:
        events = stored.legacy_events
        events["customer_id"], restamped = restamp(events, graph)
        return writer.events(events_table(events)), restamped, len(stored.manifest.parts)
    if stored.manifest is None:
        return [], 0, 0
    return rewrite_parts(store_dir, stored.manifest, stored.graph, graph, writer)


def store_events(
    data: SourceData,
    store_dir: Path | str,
    mode: WriteMode = "replace",
    max_identity_component: int | None = None,
) -> StoreWrite:
    """Write validated tables into the store in one atomic step; report what it did.

    ``replace`` makes a new store of ``data``. ``append`` adds the events whose
    ``event_id`` is not stored yet and upserts dimension rows by id (new rows win).
    With ``max_identity_component`` set, customer ids are resolved from the identifiers
    (features/store/identity.py), on append against everything stored; without, events keep
    the customer_id they have.
    """
    if mode not in ("replace", "append"):
        raise ValueError(f"mode must be 'replace' or 'append', got {mode!r}")
    store_dir = Path(store_dir)
    seconds: dict[str, float] = {}
    with write_lock(store_dir):
        t0 = time.perf_counter()
        stored = _load_stored(store_dir, read_manifest(store_dir) if mode == "append" else None)
        seconds["read store"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        given = data.events.get("event_id", pd.Series(index=data.events.index)).notna()
        batch = assign_event_ids(data.events).reset_index(drop=True)
        batch, n_repeated = _first_of_each_id(batch, given.to_numpy())
        ids = pa.array(batch["event_id"].to_numpy(object), pa.string())
        is_new = ~np.asarray(pc.is_in(ids, value_set=stored.event_ids))
        new = batch if is_new.all() else batch[is_new].reset_index(drop=True)
        seconds["event ids"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        new, graph, report = link_identities(new, stored.graph, max_identity_component)
        if len(new) == len(data.events):  # nothing skipped: the same rows, in order
            customer_ids = new["customer_id"].astype("str").set_axis(data.events.index)
        else:
            customer_ids = _customer_ids(data.events, graph)
        seconds["identity"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        writer = PartWriter(store_dir)
        parts, restamped, rewritten = _stored_parts(store_dir, stored, graph, writer)
        parts += writer.events(events_table(new))
        manifest = Manifest(
            parts=tuple(parts),
            tables=_dimensions(data, store_dir, stored, mode, writer),
            identity=writer.table("identity", _graph_table(graph)),
        )
        sync_files(store_dir, writer.written)
        switch_manifest(store_dir, manifest, writer.write_id)
        seconds["write"] = time.perf_counter() - t0
        removed = remove_unlisted(store_dir, manifest)
    return StoreWrite(
        store_dir=store_dir,
        mode=mode,
        n_events=sum(p.rows or 0 for p in manifest.parts),
        n_added=len(new),
        n_skipped=len(batch) - len(new),
        n_repeated=n_repeated,
        n_restamped=restamped,
        n_parts_rewritten=rewritten,
        n_removed_files=removed,
        identity=report,
        seconds=seconds,
        customer_ids=customer_ids,
    )


def write_store(
    data: SourceData,
    store_dir: Path | str,
    mode: WriteMode = "replace",
    max_identity_component: int | None = None,
) -> Path:
    """:func:`store_events`, returning the store's path."""
    return store_events(data, store_dir, mode, max_identity_component).store_dir
