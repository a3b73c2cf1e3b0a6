"""What every data source returns: the four contract tables, plus ground truth if known."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from features.atomic import atomic_path

TABLE_FILES = ("events", "customers", "products", "stores")


@dataclass
class SourceData:
    """Contract tables of one source, in memory (pandas).

    ``truth`` holds ground truth known only to the synthetic generator (e.g. true
    churners, the true person behind each event); real sources leave it empty.
    """

    events: pd.DataFrame
    customers: pd.DataFrame
    products: pd.DataFrame
    stores: pd.DataFrame
    truth: dict[str, pd.DataFrame] = field(default_factory=dict)
    name: str = "source"

    def tables(self) -> dict[str, pd.DataFrame]:
        return {t: getattr(self, t) for t in TABLE_FILES}


def write_source(data: SourceData, folder: Path | str) -> Path:
    """Write a source as one Parquet file per table (+ ``truth/``), atomically as a folder."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = Path(folder)
    with atomic_path(folder) as tmp:
        tmp.mkdir(parents=True)
        for name, df in data.tables().items():
            pq.write_table(pa.Table.from_pandas(df, preserve_index=False), tmp / f"{name}.parquet")
        if data.truth:
            (tmp / "truth").mkdir()
            for name, df in data.truth.items():
                table = pa.Table.from_pandas(df, preserve_index=False)
                pq.write_table(table, tmp / "truth" / f"{name}.parquet")
    return folder
