"""Consent rules shared by training evaluation, batch scoring and the service.

A channel the customer has not consented to is never recommended: its probability is
removed and the rest renormalised. Unknown consent counts as no consent. Channels that
need no consent (the customer comes to us: web, app, store) always stay.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.contract.schema import CONSENT_COLUMNS


def consent_mask(
    customer_ids: pd.Index, channels: list[str], customers: pd.DataFrame
) -> np.ndarray:
    """Boolean (customers x channels): may we reach this customer through this channel?"""
    table = customers.set_index(customers["customer_id"].astype(str))
    ids = pd.Index(customer_ids).astype(str)
    allowed = np.ones((len(ids), len(channels)), dtype=bool)
    for j, channel in enumerate(channels):
        column = CONSENT_COLUMNS.get(channel)
        if column is None:
            continue
        if column not in table.columns:
            allowed[:, j] = False
            continue
        consent = table[column].reindex(ids)
        allowed[:, j] = consent.fillna(False).to_numpy(dtype=bool)
    return allowed


def apply_consent(proba: pd.DataFrame, customers: pd.DataFrame) -> pd.DataFrame:
    """Zero out unconsented outreach channels and renormalise each row to sum to 1.

    ``proba`` is indexed by customer_id with one column per channel. A row whose every
    channel is removed stays all zeros (nothing may be sent).
    """
    allowed = consent_mask(proba.index, list(proba.columns), customers)
    values = consented(proba.to_numpy(dtype=np.float64), allowed)
    return pd.DataFrame(values, index=proba.index, columns=proba.columns)


def consented(proba: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """The array form of :func:`apply_consent` (rows x channels, same shape ``allowed``)."""
    values = np.asarray(proba, dtype=np.float64) * allowed
    total = values.sum(axis=1, keepdims=True)
    return np.divide(values, total, out=np.zeros_like(values), where=total > 0)
