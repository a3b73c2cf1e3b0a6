"""Training sets from several cutoffs: each cutoff's rows have their own as-of features.

The events are encoded once (ids, timestamps, codes) and cut at every cutoff, so a
year of monthly cutoffs costs one encoding plus one cheap pass per cutoff. Each
cutoff follows the point-in-time rule on its own: features as of ``t`` read only
events before ``t``. Cutoffs typically come from :func:`training.splits.temporal_split`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pandas as pd

from features.customer_features import features_from_encoded
from features.cutoffs import parse_cutoff
from features.encode import encode_events
from features.registry import DEFAULT_WINDOWS


def build_training_sets(
    events: pd.DataFrame,
    customers: pd.DataFrame | None,
    cutoffs: Iterable[pd.Timestamp | str],
    windows: Sequence[int] = DEFAULT_WINDOWS,
) -> pd.DataFrame:
    """Customer features as of each cutoff, stacked: column ``as_of`` first, index ``customer_id``.

    A customer appears once per cutoff at which they get a row (see :mod:`features.registry`).
    """
    times = sorted({parse_cutoff(t) for t in cutoffs})
    if not times:
        raise ValueError("give at least one cutoff")
    enc = encode_events(events, customers)
    frames = [features_from_encoded(enc, t, windows) for t in times]
    stacked = pd.concat(frames, keys=pd.DatetimeIndex(times).as_unit("us"), names=["as_of"])
    return stacked.copy().reset_index(level="as_of")  # copy: one block per dtype
