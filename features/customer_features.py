"""Customer features as of a cutoff: the registry's declarations, computed.

``build_customer_features(events, customers, as_of)`` is the one definition used by
training, batch scoring and serving. It returns one row per customer (index
``customer_id``, sorted) with exactly the columns of
:func:`features.registry.customer_features`, in order, with their dtypes. The
point-in-time and missing-value rules are in :mod:`features.registry`.

How it runs: the events are encoded once (:mod:`features.encode`; string ids become
integer codes, :mod:`features.ids`), cut at the cutoff (:mod:`features.cut`), and
each registry feature's ``compute`` reads the grouped aggregates of
:class:`~features.customer_activity.CustomerActivity` (numpy). Each aggregate is freed
after the last feature that reads it, so the build's peak memory stays near the
table's own size plus the events.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from features.contract.schema import CHANNELS, EVENT_TYPES
from features.customer_activity import CustomerActivity
from features.cut import cut
from features.encode import EncodedEvents, encode_events
from features.registry import DEFAULT_WINDOWS, Feature, customer_features

Progress = Callable[[str], None]
N_STEPS = 2 + len({f.family for f in customer_features()})
"""Progress callbacks a build makes (encoding, one per family, assembly), for progress bars."""


def build_customer_features(
    events: pd.DataFrame,
    customers: pd.DataFrame | None = None,
    as_of: pd.Timestamp | str | None = None,
    windows: Sequence[int] = DEFAULT_WINDOWS,
    progress: Progress | None = None,
) -> pd.DataFrame:
    """One row per customer as of ``as_of`` (exclusive), from contract frames.

    ``events`` / ``customers`` are contract frames (see :mod:`features.contract.schema`);
    ``customers`` is optional. ``progress`` is called with a label after each step.
    """
    if as_of is None:
        raise ValueError("as_of is required: features are always as of a cutoff")
    enc = encode_events(events, customers)
    if progress:
        progress("encoded events")
    return features_from_encoded(enc, as_of, windows, progress)


def features_from_encoded(
    enc: EncodedEvents,
    as_of: pd.Timestamp | str,
    windows: Sequence[int] = DEFAULT_WINDOWS,
    progress: Progress | None = None,
) -> pd.DataFrame:
    """Customer features from already encoded events (snapshots encode once)."""
    tick = progress or (lambda _: None)
    activity = CustomerActivity(cut(enc, as_of, windows))
    spec = customer_features(activity.windows)
    last_readers = _last_readers(spec, activity.windows)
    cols: dict[str, np.ndarray] = {}
    for i, f in enumerate(spec):
        cols[f.name] = np.asarray(f.compute(activity)).astype(f.dtype, copy=False)
        activity.forget(last_readers[i])
        if i + 1 == len(spec) or spec[i + 1].family != f.family:
            tick(f.family)
    out = assemble(cols, spec, activity.ids)
    tick("assembled the table")
    return out


def _last_readers(spec: Sequence[Feature], windows: tuple[int, ...]) -> tuple[tuple, ...]:
    """For each feature, the grouped aggregates no later feature reads (to be freed once it
    is computed), found by computing the registry on a cut without events: which
    aggregates a feature reads does not depend on the data. Only memory depends on this:
    an aggregate read again after being freed is computed again. Kept per (windows,
    features): the dry run cost every live refresh about 13 ms."""
    key = (tuple(windows), tuple(f.name for f in spec))
    if key not in _LAST_READERS:
        _LAST_READERS[key] = _find_last_readers(spec, windows)
    return _LAST_READERS[key]


_LAST_READERS: dict[tuple, tuple[tuple, ...]] = {}


def _find_last_readers(spec: Sequence[Feature], windows: tuple[int, ...]) -> tuple[tuple, ...]:
    no_events = pd.DataFrame(
        {
            "ts": pd.Series([], dtype="datetime64[us, UTC]"),
            "channel": pd.Categorical([], categories=CHANNELS),
            "event_type": pd.Categorical([], categories=EVENT_TYPES),
        }
    )
    probe = CustomerActivity(cut(encode_events(no_events, order_ids=False), "2000-01-01", windows))
    last: dict[tuple, int] = {}
    for i, f in enumerate(spec):
        probe.reads = []
        f.compute(probe)
        last.update(dict.fromkeys(probe.reads, i))
    out: list[list[tuple]] = [[] for _ in spec]
    for key, i in last.items():
        out[i].append(key)
    return tuple(tuple(keys) for keys in out)


def assemble(cols: dict[str, np.ndarray], spec: Sequence[Feature], index: pd.Index) -> pd.DataFrame:
    """Columns in registry order with registry dtypes; fails loudly on any mismatch."""
    missing = [f.name for f in spec if f.name not in cols]
    extra = sorted(set(cols) - {f.name for f in spec})
    if missing or extra:
        raise RuntimeError(f"builder and registry disagree: missing {missing}, extra {extra}")
    data = {f.name: np.asarray(cols[f.name]).astype(f.dtype, copy=False) for f in spec}
    if index.nlevels == 1 and index.name is None:
        index = index.rename("customer_id")
    return pd.DataFrame(data, index=index, copy=False)
