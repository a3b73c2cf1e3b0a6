"""Implicit-feedback ALS (``implicit``) and scoring with its float32 factors.

Only the factor arrays are kept after fitting: top-N and pair scores are plain numpy,
so a fitted recommender scores without ``implicit`` and the same way in batch or alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

ROW_BLOCK = 8
"""Top-N scores rows in blocks padded to a multiple of this, so every row goes through the
same BLAS kernel (a lone row would take the matrix-vector path and can round differently):
batch results then equal one-by-one results bit for bit."""


@dataclass(frozen=True)
class ALSParams:
    """Hyperparameters of the factorization (implicit's names)."""

    factors: int = 64
    regularization: float = 0.05
    alpha: float = 1.0
    iterations: int = 15
    num_threads: int = 2


def fit_als(
    user_items: sp.csr_matrix, params: ALSParams, random_state: int
) -> tuple[np.ndarray, np.ndarray]:
    """User and item factors (float32) of implicit's CPU ALS on a customers x products
    CSR matrix, with BLAS limited to one thread (implicit parallelises itself)."""
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    if user_items.dtype != np.float32 or not sp.isspmatrix_csr(user_items):
        user_items = sp.csr_matrix(user_items, dtype=np.float32)
    with threadpool_limits(1, "blas"):  # implicit checks BLAS threads when constructed
        model = AlternatingLeastSquares(
            factors=params.factors,
            regularization=params.regularization,
            alpha=params.alpha,
            iterations=params.iterations,
            num_threads=params.num_threads,
            random_state=random_state,
        )
        model.fit(user_items, show_progress=False)
    return (
        np.ascontiguousarray(model.user_factors, dtype=np.float32),
        np.ascontiguousarray(model.item_factors, dtype=np.float32),
    )


def pair_scores(
    user_factors: np.ndarray, item_factors: np.ndarray, users: np.ndarray, items: np.ndarray
) -> np.ndarray:
    """Dot product of each (user, item) pair, float32; users < 0 score 0."""
    out = np.zeros(len(users), dtype=np.float32)
    step = 1 << 18
    for lo in range(0, len(users), step):
        u, i = users[lo : lo + step], items[lo : lo + step]
        ok = u >= 0
        out[lo : lo + step][ok] = np.einsum(
            "ij,ij->i", user_factors[u[ok]], item_factors[i[ok]], optimize=False
        )
    return out


def top_n(
    user_factors: np.ndarray,
    item_factors: np.ndarray,
    users: np.ndarray,
    n: int,
    exclude: sp.csr_matrix | None = None,
    block: int = 256,
) -> tuple[np.ndarray, np.ndarray]:
    """Best ``n`` items per user by factor dot product: (items int32, scores float32),
    each (len(users), n), best first (ties within the list: lower item code first).
    Items stored in row ``i`` of ``exclude`` are skipped for ``users[i]``; slots left
    without an item hold -1."""
    n = min(n, item_factors.shape[0])
    out_items = np.full((len(users), n), -1, dtype=np.int32)
    out_scores = np.full((len(users), n), -np.inf, dtype=np.float32)
    block = max(ROW_BLOCK, block - block % ROW_BLOCK)
    item_t = np.ascontiguousarray(item_factors.T)
    for lo in range(0, len(users), block):
        u = users[lo : lo + block]
        padded = np.zeros((-(-len(u) // ROW_BLOCK) * ROW_BLOCK, user_factors.shape[1]), np.float32)
        padded[: len(u)] = user_factors[u]
        scores = (padded @ item_t)[: len(u)]
        if exclude is not None:
            sub = exclude[lo : lo + len(u)]
            rows = np.repeat(np.arange(len(u)), np.diff(sub.indptr))
            scores[rows, sub.indices] = -np.inf
        part = np.argpartition(-scores, n - 1, axis=1)[:, :n] if n < scores.shape[1] else None
        if part is None:
            part = np.broadcast_to(np.arange(scores.shape[1]), scores.shape)
        s = np.take_along_axis(scores, part, axis=1)
        order = np.lexsort((part, -s), axis=1)
        out_items[lo : lo + len(u)] = np.take_along_axis(part, order, axis=1)
        out_scores[lo : lo + len(u)] = np.take_along_axis(s, order, axis=1)
    out_items[~np.isfinite(out_scores)] = -1
    return out_items, out_scores
