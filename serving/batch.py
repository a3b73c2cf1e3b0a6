"""Batch scoring: every customer's three predictions as of a cutoff, written as Parquet.

``omni score --as-of DATE --out PATH`` takes the online snapshot as of DATE (the
service's, built the same way, reused when current) and runs :class:`Scorer` over every
customer in chunks: the service's code, so the same rules as ``/score`` and the same
numbers within float rounding (tests compare them with a tolerance).

The output is a folder, ``<home>/scores/latest`` by default. Each run writes a new
version into ``runs/<UTC time>/`` beside it and then switches ``latest`` (a symlink) to
it with one rename, so readers of ``scores/latest/...`` see the previous or the new
output, never a mix; the newest ``OMNI_KEEP_SCORES`` versions are kept. It holds:

- ``customers.parquet``: one row per customer: churn probability and band, channel
  probabilities after consent (``p_<channel>``), best channel, cold start, the cutoff
  the row was scored at (``scored_as_of``);
- ``recommendations.parquet``: customer_id, rank, product_id, score, reason;
- ``manifest.json``: cutoff, model versions, counts and timings.

``--only-changed`` rescores only customers with events since the previous output's
cutoff (and customers it did not have); the others keep their rows and their
``scored_as_of``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from features.atomic import atomic_folder
from features.settings import KEEP_SCORES, Settings

RUNS = "runs"
"""Folder beside an output where its versions live (``scores/runs/<time>``)."""
CHUNK = 20_000
"""Customers scored per step (memory stays flat; one progress tick each)."""
Progress = Callable[[int, int], None]


@dataclass
class BatchResult:
    """What a batch run wrote."""

    path: Path
    as_of: pd.Timestamp
    customers: int
    rescored: int
    cold_start: int
    versions: dict[str, str]
    seconds: dict[str, float] = field(default_factory=dict)


def score_customers(
    scorer,
    ids: Sequence[str],
    k: int = 10,
    progress: Progress | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(customers, recommendations) frames for ``ids``, chunk by chunk."""
    ids = list(ids)
    parts_c, parts_r = [], []
    for lo in range(0, len(ids), CHUNK):
        c, r = scorer.score_frames(ids[lo : lo + CHUNK], k=k)
        parts_c.append(c)
        parts_r.append(r)
        if progress:
            progress(min(lo + CHUNK, len(ids)), len(ids))
    if not parts_c:
        c, r = scorer.score_frames([], k=k)
        return c, r
    return pd.concat(parts_c, ignore_index=True), pd.concat(parts_r, ignore_index=True)


def snapshot_for(
    settings: Settings,
    as_of: pd.Timestamp | None,
    say=print,
    models: Sequence[str] | None = None,
) -> Path:
    """The latest snapshot when it is intact and has this cutoff and today's champions
    (of ``models``; default: every model that has one), else a new one; marked as in use
    by this process (snapshot retention keeps it)."""
    from serving.online import (
        SnapshotError,
        build_snapshot,
        is_current,
        latest_snapshot,
        mark_in_use,
        verify_snapshot,
    )

    path = None
    try:
        latest = latest_snapshot(settings)
    except SnapshotError:
        latest = None  # none yet
    if latest is not None:
        try:
            manifest = verify_snapshot(latest)
        except SnapshotError as exc:
            say(f"{exc}: building a new one")
        else:
            same_cutoff = as_of is None or pd.Timestamp(manifest["as_of"]) == as_of
            if same_cutoff and is_current(settings, latest, models):
                say(f"reusing snapshot {latest.name} (as of {manifest['as_of']})")
                path = latest
    if path is None:
        path = build_snapshot(settings, as_of, progress=say, serving=False, models=models)
    mark_in_use(settings, path)
    return path


def run_batch(
    settings: Settings,
    out: Path,
    as_of: pd.Timestamp | None = None,
    k: int = 10,
    only_changed: bool = False,
    say: Callable[[str], None] = print,
    progress: Progress | None = None,
    models: Sequence[str] | None = None,
) -> BatchResult:
    """Score every customer as of ``as_of`` (default: after the newest event) into ``out``
    with the champions of ``models`` (default: every model that has one)."""
    from serving.online import load_snapshot
    from serving.scoring import Scorer

    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    snapshot = load_snapshot(snapshot_for(settings, as_of, say, models))
    scorer = Scorer(snapshot, num_threads=0, precompute_candidates=False)
    seconds["snapshot"] = time.perf_counter() - t0
    ids = scorer.ids.tolist()  # list(index) iterates Arrow strings one by one: ~10x slower
    previous = _previous(out) if only_changed else None
    if previous is not None:
        rescore = _changed(settings, previous, snapshot.as_of, ids)
        say(f"{len(rescore):,} of {len(ids):,} customers changed since {previous['as_of']}")
    else:
        rescore = ids
    t0 = time.perf_counter()
    customers, recs = score_customers(scorer, rescore, k, progress)
    customers["scored_as_of"] = snapshot.as_of
    seconds["score"] = time.perf_counter() - t0
    if previous is not None:
        rescored = set(rescore)
        old_c, old_r = previous["customers"], previous["recommendations"]
        customers = pd.concat(
            [old_c[~old_c["customer_id"].isin(rescored)], customers], ignore_index=True
        )
        recs = pd.concat([old_r[~old_r["customer_id"].isin(rescored)], recs], ignore_index=True)
    if previous is not None or not scorer.ids.is_monotonic_increasing:
        # else already in order: scored in id order, each customer's products by rank
        customers = customers.sort_values("customer_id", kind="stable", ignore_index=True)
        recs = recs.sort_values(["customer_id", "rank"], kind="stable", ignore_index=True)
    changed = previous is not None
    return finish(
        out, snapshot, customers, recs, k, len(rescore), changed, seconds, keep=settings.keep_scores
    )


def finish(
    out: Path,
    snapshot,
    customers: pd.DataFrame,
    recs: pd.DataFrame,
    k: int,
    rescored: int,
    only_changed: bool,
    seconds: dict[str, float],
    engine: str = "local",
    keep: int = KEEP_SCORES,
) -> BatchResult:
    """Write a run's output folder with its manifest (both engines end here); ``keep``:
    how many versions of the output to keep (:func:`write_output`)."""
    import datetime as dt

    t0 = time.perf_counter()
    manifest = {
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="microseconds"),
        "as_of": snapshot.as_of.isoformat(),
        "snapshot": snapshot.path.name,
        "model_versions": snapshot.versions,
        "k": k,
        "customers": len(customers),
        "rescored": rescored,
        "cold_start": int(customers["cold_start"].sum()) if "cold_start" in customers else 0,
        "only_changed": only_changed,
        "engine": engine,
    }
    write_output(out, customers, recs, manifest, keep)
    seconds["write"] = time.perf_counter() - t0
    return BatchResult(
        path=out,
        as_of=snapshot.as_of,
        customers=len(customers),
        rescored=rescored,
        cold_start=manifest["cold_start"],
        versions=snapshot.versions,
        seconds=seconds,
    )


def write_output(
    out: Path, customers: pd.DataFrame, recs: pd.DataFrame, manifest: dict, keep: int = KEEP_SCORES
) -> Path:
    """The output folder as one switch: a new version in ``runs/`` beside ``out``, then
    ``out`` (a symlink) pointed at it; a failed run leaves the previous one in place.
    The newest ``keep`` versions stay (a reader that started on the previous one can
    finish); older ones are removed."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = Path(out)
    meta = {b"omni_batch": json.dumps(manifest).encode()}
    with atomic_folder(out, out.parent / RUNS, keep) as tmp:
        for name, frame in (("customers", customers), ("recommendations", recs)):
            table = pa.Table.from_pandas(frame, preserve_index=False)
            table = table.replace_schema_metadata({**(table.schema.metadata or {}), **meta})
            pq.write_table(table, tmp / f"{name}.parquet")
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return out


def read_output(out: Path) -> dict:
    """A batch output folder: its manifest, customers and recommendations frames (all
    from the one version ``out`` showed when reading began)."""
    out = Path(out).resolve()
    manifest = json.loads((out / "manifest.json").read_text())
    return {
        **manifest,
        "customers": pd.read_parquet(out / "customers.parquet"),
        "recommendations": pd.read_parquet(out / "recommendations.parquet"),
    }


def _previous(out: Path) -> dict | None:
    if not (Path(out) / "manifest.json").exists():
        return None
    return read_output(out)


def _changed(settings: Settings, previous: dict, as_of: pd.Timestamp, ids: list[str]) -> list[str]:
    """Customers with events in [previous cutoff, as_of), or missing from the previous run."""
    from features.store.events import read_events

    since = pd.Timestamp(previous["as_of"])
    known = set(previous["customers"]["customer_id"])
    if since >= as_of:
        return [i for i in ids if i not in known]
    recent = read_events(settings.store_dir, start=since, end=as_of, columns=["customer_id"])
    active = set(recent["customer_id"].dropna().astype(str))
    return [i for i in ids if i in active or i not in known]
