"""Ingest: validate a source's files, resolve identities, write the events store.

This is the one path every source takes (synthetic, Complete Journey, a user's files),
so what lands in the store has always passed the same checks.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from features.atomic import atomic_path
from features.identity import IdentityReport
from features.loaders import ColumnMap, LoadResult, load_files
from features.settings import Settings
from features.store import StoreWrite, WriteMode, store_events
from features.validate import OnError

Progress = Callable[[str], None]


@dataclass
class IngestResult:
    """What landed where, and what was set aside."""

    load: LoadResult
    identity: IdentityReport
    store_dir: Path
    quarantine_dir: Path | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    store: StoreWrite | None = None  # events added / skipped, stored events restamped


def write_quarantine(quarantined: Mapping[str, pd.DataFrame], folder: Path) -> Path:
    """Write rejected rows with their file/row/column/reason as one CSV per table."""
    with atomic_path(folder) as tmp:
        tmp.mkdir(parents=True)
        for table, bad in quarantined.items():
            bad.to_csv(tmp / f"{table}.csv", index=False)
    return folder


def ingest(
    source: Path | str | Mapping[str, Path | str],
    settings: Settings,
    column_map: ColumnMap | None = None,
    on_error: OnError = "raise",
    mode: WriteMode = "replace",
    progress: Progress | None = None,
) -> IngestResult:
    """Load ``source`` (folder or {table: file}), resolve identities and write the store.

    Nothing is written to the store unless every step succeeds, and the write itself is
    one atomic step. An append skips events already stored (same ``event_id``) and
    resolves identities against everything loaded before.
    """
    say = progress or (lambda _msg: None)
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    loaded = load_files(source, column_map=column_map, on_error=on_error)
    seconds["validate"] = time.perf_counter() - t0
    say(
        f"validated {len(loaded.data.events):,} events, {len(loaded.data.customers):,} customers, "
        f"{len(loaded.data.products):,} products, {len(loaded.data.stores):,} stores "
        f"in {seconds['validate']:.1f} s"
    )
    quarantine_dir = None
    if loaded.n_quarantined:
        stamp = time.strftime("%Y%m%dT%H%M%S")
        quarantine_dir = write_quarantine(loaded.quarantined, settings.quarantine_dir / stamp)
        say(f"quarantined {loaded.n_quarantined:,} bad rows -> {quarantine_dir}")

    t0 = time.perf_counter()
    written = store_events(
        loaded.data,
        settings.store_dir,
        mode,
        max_identity_component=settings.max_identity_component,
    )
    loaded.data.events["customer_id"] = written.customer_ids  # as resolved, input order
    seconds["identity"] = written.seconds["identity"]
    seconds["store"] = time.perf_counter() - t0 - seconds["identity"]
    identity_lines = written.identity.lines() if written.identity and written.n_added else []
    for line in [*identity_lines, *written.lines()]:
        say(line)
    say(f"wrote events store {settings.store_dir} in {seconds['store']:.1f} s")
    return IngestResult(
        loaded, written.identity, settings.store_dir, quarantine_dir, seconds, written
    )
