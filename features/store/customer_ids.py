"""Keeping the customer ids of stored events equal to one resolution of everything loaded.

The store keeps its identity graph: every distinct tuple of raw identifiers (customer_id
as given, email_hash, loyalty_id, device_id, phone_hash) with the customer id it resolves
to. When an append's new links change what some stored tuples resolve to (two customers
merge, a known customer_id names an anonymous one), the parts holding their events are
rewritten with the new ids, in the same manifest switch as the append.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from features.store.identity import LINK_COLUMNS, RESOLVED, graph_lookup
from features.store.manifest import Manifest, StoreFile
from features.store.parts import RAW_CUSTOMER_ID, PartWriter, parts_dataset


def stored_links(events: pd.DataFrame, raw: str) -> pd.DataFrame:
    """The distinct identifier tuples of ``events`` (the raw customer id read from column
    ``raw``), each with the customer id its events carry."""
    source = {c: raw if c == "customer_id" else c for c in LINK_COLUMNS}
    links = pd.DataFrame(
        {c: events[col] if col in events.columns else None for c, col in source.items()}
    ).astype("str")
    links[RESOLVED] = events["customer_id"].astype("str").to_numpy()
    linked = links[list(LINK_COLUMNS)].notna().any(axis=1).to_numpy()
    return links[linked].drop_duplicates(subset=list(LINK_COLUMNS)).reset_index(drop=True)


def add_links(graph: pd.DataFrame | None, events: pd.DataFrame) -> pd.DataFrame:
    """``graph`` with the tuples of ``events`` added as they are resolved (for writes that
    keep the customer ids they are given)."""
    links = stored_links(events, "customer_id")
    both = pd.concat([graph, links], ignore_index=True) if graph is not None else links
    return both.drop_duplicates(subset=list(LINK_COLUMNS)).reset_index(drop=True)


def restamp(events: pd.DataFrame, graph: pd.DataFrame) -> tuple[pd.Series, int]:
    """Customer ids of stored events under ``graph`` (kept where their tuple is not in
    it), and how many changed."""
    new = graph_lookup(graph, events, customer_id=RAW_CUSTOMER_ID)
    old = events["customer_id"].astype("str")
    new = pd.Series(new, index=events.index, dtype="str").fillna(old)
    return new, int((new.fillna("\0") != old.fillna("\0")).sum())


def _changed(old_graph: pd.DataFrame | None, graph: pd.DataFrame) -> pd.DataFrame:
    """The stored tuples that resolve differently now: their old customer id, and the new
    one in ``resolved_id``. Events of other tuples keep their customer."""
    if old_graph is None or not len(old_graph):
        return graph.iloc[:0]
    now = pd.Series(graph_lookup(graph, old_graph), dtype="str")
    before = old_graph[RESOLVED].astype("str").reset_index(drop=True)
    differs = (now.fillna("\0") != before.fillna("\0")).to_numpy()
    changed = old_graph[differs].reset_index(drop=True).rename(columns={RESOLVED: "old_id"})
    changed[RESOLVED] = now[differs].to_numpy()
    return changed


def rewrite_parts(
    store_dir: Path,
    manifest: Manifest,
    old_graph: pd.DataFrame | None,
    graph: pd.DataFrame,
    writer: PartWriter,
) -> tuple[list[StoreFile], int, int]:
    """The stored parts after this write: kept as they are, or rewritten where an event's
    customer id changed from ``old_graph`` to ``graph``. Returns the parts, the events
    given another customer id, and the parts rewritten."""
    changed = _changed(old_graph, graph)
    if not len(changed):
        return list(manifest.parts), 0, 0
    old_ids = changed.pop("old_id")
    value_set = pa.array(sorted(old_ids.dropna().unique()), pa.string())
    with_null = bool(old_ids.isna().any())
    hit = pc.field("customer_id").isin(value_set)
    if with_null:
        hit = hit | pc.field("customer_id").is_null()
    dataset = parts_dataset(store_dir, manifest, ["customer_id"])
    hits = {Path(f.path): f.count_rows(filter=hit) for f in dataset.get_fragments()}
    kept, restamped, rewritten = [], 0, 0
    for part in manifest.parts:
        if not hits[store_dir / part.path]:
            kept.append(part)
            continue
        table = pq.read_table(store_dir / part.path)
        table, n = _restamp_part(table, changed, value_set, with_null)
        kept.append(writer.rewrite(part, table))
        restamped += n
        rewritten += 1
    return kept, restamped, rewritten


def _restamp_part(
    table: pa.Table, changed: pd.DataFrame, old_ids: pa.Array, with_null: bool
) -> tuple[pa.Table, int]:
    """``table`` (a stored part) with new customer ids where its events' tuples are among
    the ``changed`` ones; only rows carrying one of their ``old_ids`` are looked up."""
    ids = table["customer_id"].combine_chunks()
    mask = pc.is_in(ids, value_set=old_ids)
    if with_null:
        mask = pc.or_(mask, pc.is_null(ids))
    mask = pc.fill_null(mask, False)
    columns = [c for c in (*LINK_COLUMNS, RAW_CUSTOMER_ID) if c in table.column_names]
    rows = table.filter(mask).select(columns).to_pandas()
    new, n = restamp(rows, changed)
    replaced = pc.replace_with_mask(ids, mask, pa.array(new.to_numpy(object), pa.string()))
    index = table.schema.get_field_index("customer_id")
    return table.set_column(index, "customer_id", replaced), n
