"""The customer x product matrix ALS learns from: event-weighted, then BM25 confidence.

Each event adds its type's weight (purchase > add-to-cart > view) to its (customer,
product) cell; BM25 then damps heavy customers and ubiquitous products, so that a weekly
milk purchase does not drown out everything else a customer shows interest in.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import scipy.sparse as sp

from features.contract.schema import EVENT_TYPES
from training.recs.data import History

DEFAULT_EVENT_WEIGHTS: dict[str, float] = {"purchase": 1.0, "add_to_cart": 0.3, "view": 0.1}


def event_weights(weights: Mapping[str, float] | None = None) -> np.ndarray:
    """Weight per contract event-type code (0 for types that are not product events)."""
    weights = DEFAULT_EVENT_WEIGHTS if weights is None else weights
    unknown = set(weights) - set(EVENT_TYPES)
    if unknown:
        raise ValueError(f"unknown event types in event_weights: {sorted(unknown)}")
    if any(w < 0 for w in weights.values()):
        raise ValueError("event weights must be non-negative")
    out = np.zeros(len(EVENT_TYPES), dtype=np.float32)
    for name, w in weights.items():
        out[EVENT_TYPES.index(name)] = w
    return out


def interaction_matrix(
    history: History,
    as_of: pd.Timestamp | str,
    lookback_days: int = 365,
    weights: Mapping[str, float] | None = None,
) -> sp.csr_matrix:
    """Summed event weights per (customer, product) from events in the lookback before
    ``as_of``: a float32 CSR matrix, customers x products of the whole catalogue."""
    rows = history.before(as_of, lookback_days)
    w = event_weights(weights)[history.event_type[rows]]
    keep = w > 0
    cat = history.catalogue
    m = sp.csr_matrix(
        (w[keep], (history.customer[rows][keep], history.item[rows][keep])),
        shape=(cat.n_customers, cat.n_items),
        dtype=np.float32,
    )
    m.sum_duplicates()
    return m


def bm25(
    matrix: sp.csr_matrix, k1: float = 100.0, b: float = 0.8, norm: np.ndarray | None = None
) -> sp.csr_matrix:
    """BM25-weighted copy of a customers x products matrix, as float32 CSR.

    The formula of ``implicit.nearest_neighbours.bm25_weight``, oriented as implicit's
    examples use it (products as documents, customers as terms): idf over customers,
    length normalisation by each product's total weight. One change: the average length
    is taken over products with any interaction, not over the whole catalogue, so that
    unsold products in the index do not shift the weights. ``norm``: the products'
    normalisation of another matrix (:func:`bm25_norm`), e.g. the one ALS was fitted on,
    so that rows of customers folded in later are weighted as that matrix's rows were
    (a customer's idf depends on their own row only).
    """
    m = matrix.T.tocoo()  # products x customers
    if m.nnz == 0:
        return matrix.astype(np.float32).tocsr()
    n_docs = float(m.shape[0])
    idf = np.log(n_docs) - np.log1p(np.bincount(m.col, minlength=m.shape[1]))
    if norm is None:
        norm = bm25_norm(matrix, b)
    data = m.data * (k1 + 1.0) / (k1 * norm[m.row] + m.data) * idf[m.col]
    out = sp.csr_matrix(
        (data.astype(np.float32), (m.col, m.row)), shape=matrix.shape, dtype=np.float32
    )
    out.sort_indices()
    return out


def bm25_norm(matrix: sp.csr_matrix, b: float = 0.8) -> np.ndarray:
    """Each product's BM25 length normalisation in ``matrix`` (customers x products):
    ``1 - b + b * its total weight / the mean total of products with any`` (float64)."""
    totals = np.bincount(matrix.indices, weights=matrix.data, minlength=matrix.shape[1])
    sold = totals > 0
    mean = totals[sold].mean() if sold.any() else 1.0
    return (1.0 - b) + b * totals / mean
