"""The decision log: every journey decision (sent, delayed, or not sent and why), one
Parquet file per evaluation run under ``<home>/journeys/decisions/``, written under a
temporary name and renamed, so a reader sees whole runs only (docs/journeys.md)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa

from features.atomic import write_parquet_atomic

DECISIONS = "decisions"
"""The log's folder in the journeys folder."""
_TS = pa.timestamp("us", tz="UTC")
SCHEMA = pa.schema(
    [
        pa.field("decision_id", pa.string()),
        pa.field("run_id", pa.string()),
        pa.field("decided_at", _TS),
        pa.field("customer_id", pa.string()),
        pa.field("journey", pa.string()),
        pa.field("trigger_ts", _TS),
        pa.field("status", pa.string()),
        pa.field("reason", pa.string()),
        pa.field("channel", pa.string()),
        pa.field("send_at", _TS),
        pa.field("products", pa.list_(pa.string())),
        pa.field("churn_probability", pa.float64()),
        pa.field("channel_probability", pa.float64()),
        pa.field("uplift", pa.float64()),
        pa.field("priority", pa.int32()),
    ]
)
STATUSES = ("sent", "delayed", "not_sent")
REASONS = (
    "sent",
    "quiet_hours",
    "no_consent",
    "holdout_global",
    "holdout_journey",
    "uplift_too_low",
    "suppressed_purchase",
    "suppressed_contact",
    "lower_priority",
    "capped",
    "over_share",
)
"""Why: the first two go with ``sent`` / ``delayed``, the rest with ``not_sent``
(``over_share``: refused in real time, the journey would contact more than the policy's
share of all customers within a day)."""


def decisions_dir(journeys_dir: Path) -> Path:
    """Where the log of a journeys folder lives."""
    return Path(journeys_dir) / DECISIONS


def as_table(decisions: pd.DataFrame) -> pa.Table:
    """``decisions`` (the log's columns) as an Arrow table of the log's schema; a missing
    or mistyped column is a ``ValueError`` naming it (a bug, caught before writing)."""
    missing = [f.name for f in SCHEMA if f.name not in decisions.columns]
    if missing:
        raise ValueError(f"decisions lack the log's columns {missing}")
    bad = set(decisions["status"].unique()) - set(STATUSES)
    if bad:
        raise ValueError(f"unknown decision status {sorted(bad)}")
    bad = set(decisions["reason"].unique()) - set(REASONS)
    if bad:
        raise ValueError(f"unknown decision reason {sorted(bad)}")
    return pa.Table.from_pandas(decisions[SCHEMA.names], schema=SCHEMA, preserve_index=False)


def write_decisions(journeys_dir: Path, decisions: pd.DataFrame, run_id: str) -> Path:
    """One run's decisions as ``decisions/<run_id>.parquet`` (atomic)."""
    target = decisions_dir(journeys_dir) / f"{run_id}.parquet"
    return write_parquet_atomic(as_table(decisions), target, compression="zstd")


def read_decisions(
    journeys_dir: Path, since: datetime | None = None, until: datetime | None = None
) -> pd.DataFrame:
    """Decisions decided in [since, until) (all without them), empty with the log's
    columns when there are none."""
    import pyarrow.dataset as ds

    files = sorted(str(p) for p in decisions_dir(journeys_dir).glob("*.parquet"))
    if not files:
        return SCHEMA.empty_table().to_pandas()
    flt = None
    if since is not None:
        flt = ds.field("decided_at") >= pa.scalar(pd.Timestamp(since).to_pydatetime(), _TS)
    if until is not None:
        end = ds.field("decided_at") < pa.scalar(pd.Timestamp(until).to_pydatetime(), _TS)
        flt = end if flt is None else flt & end
    return ds.dataset(files, schema=SCHEMA, format="parquet").to_table(filter=flt).to_pandas()


def install_history(source_folder: Path, journeys_dir: Path) -> Path | None:
    """A written synthetic source's planted journey history
    (``truth/journey_decisions.parquet``, features/sources/synthetic_journeys.py) as a
    run of the decision log (None when the source has none)."""
    file = Path(source_folder) / "truth" / "journey_decisions.parquet"
    if not file.exists():
        return None
    return write_decisions(journeys_dir, pd.read_parquet(file), run_id="synthetic-history")
