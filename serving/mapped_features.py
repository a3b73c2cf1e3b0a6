"""The snapshot's feature table as memory-mapped columns (issue 17, stop 45).

A worker keeps the snapshot's feature rows for the whole time it serves (the live
journeys read them), ~0.4 KB a customer read from ``features.parquet`` into private
memory. The snapshot also stores its numeric columns in ``serving/``, one
(columns, rows) array per dtype, so that each column is a contiguous row of a mapped
file: the table is then built on those pages without a copy, shared by the workers and
reclaimable, as the ranked lists are. ``features.parquet`` stays the table of record
(batch scoring, monitoring and older code read it).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

PREFIX = "features_"
"""Serving arrays of the feature table: ``features_columns`` (every column, in order),
``features_<dtype>`` and ``features_<dtype>_names`` (that dtype's columns)."""
ORDER = f"{PREFIX}columns"


def feature_blocks(table: pd.DataFrame) -> dict[str, np.ndarray]:
    """``table``'s plain numeric and bool columns as one (columns, rows) array per dtype,
    with their names and the order of every column; others (text, nullable) are left to
    the Parquet file."""
    groups: dict[str, list[str]] = {}
    for name, column in table.items():
        if isinstance(column.dtype, np.dtype) and column.dtype.kind in "biuf":
            groups.setdefault(column.dtype.name, []).append(str(name))
    out = {ORDER: np.array([str(c) for c in table.columns], dtype=str)}
    for dtype, names in groups.items():
        out[f"{PREFIX}{dtype}"] = np.stack([table[n].to_numpy() for n in names])
        out[f"{PREFIX}{dtype}_names"] = np.array(names, dtype=str)
    return out


def take_blocks(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The feature table's arrays, removed from a snapshot's serving ``arrays``."""
    return {name: arrays.pop(name) for name in list(arrays) if name.startswith(PREFIX)}


def mapped_table(
    blocks: dict[str, np.ndarray],
    index: pd.Index,
    read_columns: Callable[[list[str]], pd.DataFrame],
) -> pd.DataFrame | None:
    """The feature table over ``blocks`` (from :func:`feature_blocks`, mapped), each
    numeric column a view of its block's row; ``read_columns`` reads the other columns
    from the Parquet file. None when the blocks do not fit ``index`` (not this table's)."""
    if ORDER not in blocks:
        return None
    columns: dict[str, object] = {}
    for key, names in blocks.items():
        if not key.endswith("_names"):
            continue
        values = blocks[key.removesuffix("_names")]
        if values.shape != (len(names), len(index)):
            return None
        columns |= {str(name): values[i] for i, name in enumerate(names)}
    order = [str(c) for c in blocks[ORDER]]
    rest = [c for c in order if c not in columns]
    if rest:
        read = read_columns(rest)
        columns |= {c: read[c].array for c in rest}  # by position: no index to align
    return pd.DataFrame({c: columns[c] for c in order}, index=index, copy=False)
