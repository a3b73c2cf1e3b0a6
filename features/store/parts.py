"""How the events store keeps its event parts: the columns of a part, a pyarrow dataset
over exactly the parts a manifest lists, and the writer of one write's new files.

A part holds the contract columns plus ``raw_customer_id`` (the customer id as the source
gave it, before resolution); its month is in its folder name (hive partitioning), so a
time range reads only its months.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from features.contract.schema import EVENTS
from features.store.manifest import EVENTS_DIR, PART_PREFIX, Manifest, StoreFile, new_write_id

RAW_CUSTOMER_ID = "raw_customer_id"
"""Stored beside each event: its customer_id as the source gave it (before resolution),
which with the identifier columns is the event's tuple in the identity graph."""
STORED_COLUMNS = [*EVENTS.names, RAW_CUSTOMER_ID]
# Event ids are all distinct: trying a dictionary for them only costs time.
_DICTIONARY_COLUMNS = [c for c in STORED_COLUMNS if c != "event_id"]
PARTITIONING = ds.partitioning(pa.schema([("month", pa.int32())]), flavor="hive")


def storage_schema(cols: list[str]) -> pa.Schema:
    """Arrow schema of stored event columns (categories as dictionaries)."""
    fields = []
    for c in cols:
        if c == RAW_CUSTOMER_ID:
            fields.append(pa.field(c, pa.string()))
            continue
        col = EVENTS.column(c)
        typ = pa.dictionary(pa.int32(), pa.string()) if col.kind == "category" else col.arrow_type
        fields.append(pa.field(c, typ))
    return pa.schema(fields)


def parts_dataset(store_dir: Path, manifest: Manifest, columns: list[str]) -> ds.Dataset:
    """The manifest's event parts (and only those) as one pyarrow dataset."""
    schema = storage_schema(columns).append(pa.field("month", pa.int32()))
    files = [str(store_dir / p.path) for p in manifest.parts]
    return ds.dataset(
        files,
        schema=schema,
        format="parquet",
        partitioning=PARTITIONING,
        partition_base_dir=str(store_dir / EVENTS_DIR),
    )


def events_table(events: pd.DataFrame) -> pa.Table:
    """Events as an Arrow table with the storage schema plus the ``month`` partition key."""
    cols = [c for c in STORED_COLUMNS if c in events.columns]
    table = pa.Table.from_pandas(events[cols], preserve_index=False).cast(storage_schema(cols))
    for i, name in enumerate(STORED_COLUMNS):  # every column is stored, empty if absent
        if name not in cols:
            typ = storage_schema([name]).field(0).type
            table = table.add_column(i, pa.field(name, typ), pa.nulls(len(table), typ))
    ts = events["ts"]
    month = (ts.dt.year * 100 + ts.dt.month).to_numpy(dtype=np.int32)
    return table.append_column("month", pa.array(month, pa.int32()))


class PartWriter:
    """Writes one write's new files under names no other write uses."""

    def __init__(self, store_dir: Path) -> None:
        self.store_dir = store_dir
        self.write_id = new_write_id()
        self.written: list[str] = []
        self._files = 0  # numbers every file (or batch of parts) this write makes

    def _rel(self, path: Path | str) -> str:
        return Path(path).resolve().relative_to(self.store_dir.resolve()).as_posix()

    def events(self, table: pa.Table) -> list[StoreFile]:
        """New parts for ``table`` (with ``month``), one or more per month."""
        parts: list[StoreFile] = []
        if not len(table):
            return parts

        def visit(written) -> None:
            parts.append(StoreFile(self._rel(written.path), written.metadata.num_rows))

        self._files += 1
        ds.write_dataset(
            table,
            self.store_dir / EVENTS_DIR,
            format="parquet",
            partitioning=PARTITIONING,
            basename_template=f"{PART_PREFIX}{self.write_id}-{self._files}-{{i}}.parquet",
            existing_data_behavior="overwrite_or_ignore",
            max_rows_per_group=1 << 20,
            file_options=ds.ParquetFileFormat().make_write_options(
                use_dictionary=_DICTIONARY_COLUMNS
            ),
            file_visitor=visit,
        )
        self.written += [p.path for p in parts]
        return sorted(parts, key=lambda p: p.path)

    def rewrite(self, part: StoreFile, table: pa.Table) -> StoreFile:
        """A new file, in the same month folder, replacing ``part``'s content."""
        self._files += 1
        rel = Path(part.path).parent / f"{PART_PREFIX}{self.write_id}-{self._files}.parquet"
        pq.write_table(
            table, self.store_dir / rel, row_group_size=1 << 20, use_dictionary=_DICTIONARY_COLUMNS
        )
        self.written.append(rel.as_posix())
        return StoreFile(rel.as_posix(), len(table))

    def table(self, stem: str, table: pa.Table) -> StoreFile:
        rel = f"{stem}-{self.write_id}.parquet"
        pq.write_table(table, self.store_dir / rel)
        self.written.append(rel)
        return StoreFile(rel, len(table))
