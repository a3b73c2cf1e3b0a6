"""Labelled sets: features as of each cutoff joined with the labels after it.

The event log is encoded once and cut at every cutoff (features read ts < cutoff,
labels ts >= cutoff), so rolling sets cost one pass per cutoff, not one load.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pandas as pd

from features.customer_features import features_from_encoded
from features.encode import encode_events

LabelFn = Callable[[pd.DataFrame, pd.Timestamp], pd.DataFrame]


def labelled_sets(
    events: pd.DataFrame,
    customers: pd.DataFrame | None,
    cutoffs: Sequence[pd.Timestamp],
    label_fn: LabelFn,
    label_column: str,
) -> dict[pd.Timestamp, tuple[pd.DataFrame, pd.Series]]:
    """For each cutoff: (features of the labelled customers, their labels), aligned by id.

    ``label_fn(events, cutoff)`` returns customer_id plus ``label_column``; only customers
    with a label are kept (the label defines the population).
    """
    encoded = encode_events(events, customers)
    out: dict[pd.Timestamp, tuple[pd.DataFrame, pd.Series]] = {}
    for cutoff in cutoffs:
        features = features_from_encoded(encoded, cutoff)
        labels = label_fn(events, cutoff).set_index("customer_id")[label_column]
        labels.index = labels.index.astype(str)
        features.index = features.index.astype(str)
        ids = labels.index.intersection(features.index)
        out[cutoff] = (features.loc[ids], labels.loc[ids])
    return out


def stack(parts: Sequence[tuple[pd.DataFrame, pd.Series]]) -> tuple[pd.DataFrame, pd.Series]:
    """Concatenate several sets' features and labels (rows stay aligned)."""
    X = pd.concat([p[0] for p in parts])
    y = pd.concat([p[1] for p in parts])
    return X, y
