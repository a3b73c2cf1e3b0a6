"""Atomic writes: build in a temporary path beside the target, then rename over it.

A crash or a validation error never leaves a half-written file or folder behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path


def _tmp_sibling(target: Path) -> Path:
    return target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex[:8]}")


@contextlib.contextmanager
def atomic_path(target: Path | str) -> Iterator[Path]:
    """Yield a temporary path; on success it replaces ``target`` (file or folder) at once.

    On error the temporary path is removed and ``target`` is left as it was.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_sibling(target)
    try:
        yield tmp
        if tmp.is_dir() and target.exists():
            # os.replace cannot replace a non-empty folder: move the old one aside first.
            old = _tmp_sibling(target)
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


def write_parquet_atomic(df, target: Path | str, **kwargs) -> Path:
    """Write a pandas frame or arrow table to Parquet atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = df if isinstance(df, pa.Table) else pa.Table.from_pandas(df, preserve_index=False)
    target = Path(target)
    with atomic_path(target) as tmp:
        pq.write_table(table, tmp, **kwargs)
    return target
