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
from features.contract.validate import DataError, OnError, Problem, TimeRange
from features.settings import Settings
from features.sources.base import SourceData
from features.sources.files import ColumnMap, LoadResult, load_files
from features.store.events import (
    StoreMissingError,
    StoreWrite,
    WriteMode,
    events_dataset,
    store_events,
)
from features.store.identity import IdentityReport

Progress = Callable[[str], None]
FORMULA_START = r"^[=+\-@\t\r]"
"""What a spreadsheet may read as a formula at the start of a cell (OWASP, CSV injection)."""
PLAIN_NUMBER = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"


@dataclass
class IngestResult:
    """What landed where, and what was set aside (``identity`` is None when nothing loaded)."""

    load: LoadResult
    identity: IdentityReport | None
    store_dir: Path
    quarantine_dir: Path | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    store: StoreWrite | None = None  # events added / skipped, stored events restamped


class EmptyLoadError(DataError):
    """The load would leave the store without events: refused, the store untouched."""

    def __init__(self, file: str, why: str) -> None:
        super().__init__([Problem(file, None, None, why)])
        self.args = (f"no events in {file}: the store was left as it was ({why})",)


def spreadsheet_safe(values: pd.Series) -> pd.Series:
    """Text a spreadsheet will not run: a cell starting with = + - @ tab or CR gets a leading
    single quote (OWASP's advice for CSV injection). Plain numbers such as -2 stay as they are."""
    text = values.astype("string")
    risky = text.str.contains(FORMULA_START, regex=True) & ~text.str.fullmatch(PLAIN_NUMBER)
    return text.mask(risky.fillna(False).astype(bool), "'" + text)


def write_quarantine(quarantined: Mapping[str, pd.DataFrame], folder: Path) -> Path:
    """Write rejected rows with their file/row/column/reason as one CSV per table.

    Values and column names are made spreadsheet-safe (:func:`spreadsheet_safe`): the
    rows come from untrusted files and people open these in spreadsheets.
    """
    with atomic_path(folder) as tmp:
        tmp.mkdir(parents=True)
        for table, bad in quarantined.items():
            safe = bad.apply(spreadsheet_safe)
            safe.columns = spreadsheet_safe(pd.Series(bad.columns, dtype="string")).tolist()
            safe.to_csv(tmp / f"{table}.csv", index=False)
    return folder


def store_has_events(store_dir: Path) -> bool:
    """Whether the events store exists and holds at least one event (reads only metadata)."""
    try:
        return events_dataset(store_dir).count_rows() > 0
    except StoreMissingError:
        return False


def ingest(
    source: Path | str | Mapping[str, Path | str],
    settings: Settings,
    column_map: ColumnMap | None = None,
    on_error: OnError = "raise",
    mode: WriteMode = "replace",
    progress: Progress | None = None,
    encoding: str = "utf-8",
    times: TimeRange | None = None,
    allow_empty: bool = False,
    constants: ColumnMap | None = None,
) -> IngestResult:
    """Load ``source`` (folder or {table: file}), resolve identities and write the store.

    Nothing is written to the store unless every step succeeds, and the write itself is
    one atomic step. A load that would leave the store without events is refused
    (:class:`EmptyLoadError`) unless ``allow_empty``; appending no new events to a store
    that has some changes nothing. An append skips events already stored (same
    ``event_id``) and resolves identities against everything loaded before.
    ``constants`` (``{table: {column: value}}``) sets columns the files lack.
    """
    say = progress or (lambda _msg: None)
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    loaded = load_files(
        source,
        column_map=column_map,
        on_error=on_error,
        encoding=encoding,
        times=times,
        constants=constants,
    )
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
    if not len(loaded.data.events):
        events_file = str(loaded.files["events"])
        if mode == "append" and store_has_events(settings.store_dir):
            say(f"no new events in {events_file}: the store's events are unchanged")
            if not any(len(df) for df in loaded.data.tables().values()):
                return IngestResult(loaded, None, settings.store_dir, quarantine_dir, seconds)
        elif not allow_empty:
            bad = loaded.quarantined.get("events")
            why = (
                f"all {len(bad):,} rows were bad, see {quarantine_dir}"
                if bad is not None and len(bad)
                else "the file holds no rows; --allow-empty loads it anyway"
            )
            raise EmptyLoadError(events_file, why)

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


def write_synthetic(
    settings: Settings,
    customers: int,
    days: int,
    seed: int,
    end: str,
    journey_response: bool = False,
) -> tuple[SourceData, Path]:
    """Generate seeded synthetic data and write it, with its ground truth, under
    ``raw/synthetic`` in the home; returns the data and that folder. ``journey_response``:
    with a planted journey history (features/sources/synthetic_journeys.py)."""
    from features.sources.base import write_source
    from features.sources.synthetic import generate

    data = generate(
        n_customers=customers, days=days, seed=seed, end=end, journey_response=journey_response
    )
    return data, write_source(data, settings.raw_dir / "synthetic")


def synthetic_time_range(end: str) -> TimeRange:
    """The load's usual time range, reaching ``end`` (synthetic data may end in the future)."""
    default = TimeRange.default()
    return TimeRange(default.earliest, max(default.latest, pd.to_datetime(end, utc=True)))


def load_synthetic(
    settings: Settings,
    customers: int,
    days: int,
    seed: int,
    end: str = "2026-01-01",
    progress: Progress | None = None,
    journey_response: bool = False,
) -> IngestResult:
    """Synthetic data generated, written under the home and ingested like any source
    (the same validation; its time range reaches ``end``). ``journey_response``: with a
    planted journey history in the source's truth (the decision log takes it with
    :func:`serving.journeys.decisions.install_history`)."""
    _, raw = write_synthetic(settings, customers, days, seed, end, journey_response)
    return ingest(raw, settings, progress=progress, times=synthetic_time_range(end))
