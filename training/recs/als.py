"""Implicit-feedback ALS (``implicit``) and scoring with its float32 factors.

Only the factor arrays are kept after fitting: top-N and pair scores are plain numpy,
so a fitted recommender scores without ``implicit`` and the same way in batch or alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

BLOCK = 256
"""Users scored per matrix product in :func:`top_n`."""


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
    block: int = BLOCK,
) -> tuple[np.ndarray, np.ndarray]:
    """Best ``n`` items per user by factor dot product: (items int32, scores float32),
    each (len(users), n), best first (ties: lower item code first). Items stored in row
    ``i`` of ``exclude`` are skipped for ``users[i]``; slots left empty hold -1.

    A BLAS matrix product shortlists 2n items per user, then the shortlist is rescored
    with :func:`pair_scores`. BLAS rounds a row differently depending on its position in
    the block, so ranking by its scores would make batch results differ from one-by-one
    results; the rescoring is the same computation for a pair whatever the batch.
    """
    n = min(n, item_factors.shape[0])
    wide = min(2 * n, item_factors.shape[0])
    out_items = np.full((len(users), n), -1, dtype=np.int32)
    out_scores = np.full((len(users), n), -np.inf, dtype=np.float32)
    item_t = np.ascontiguousarray(item_factors.T)
    for lo in range(0, len(users), block):
        u = users[lo : lo + block]
        scores = user_factors[u] @ item_t
        if exclude is not None:
            sub = exclude[lo : lo + len(u)]
            rows = np.repeat(np.arange(len(u)), np.diff(sub.indptr))
            scores[rows, sub.indices] = -np.inf
        if wide < scores.shape[1]:
            short = np.argpartition(-scores, wide - 1, axis=1)[:, :wide]
        else:
            short = np.broadcast_to(np.arange(scores.shape[1]), scores.shape)
        valid = np.isfinite(np.take_along_axis(scores, short, axis=1))
        exact = pair_scores(
            user_factors, item_factors, np.repeat(u, short.shape[1]), short.ravel()
        ).reshape(short.shape)
        exact[~valid] = -np.inf
        order = np.lexsort((short, -exact), axis=1)[:, :n]
        out_items[lo : lo + len(u)] = np.take_along_axis(short, order, axis=1)
        out_scores[lo : lo + len(u)] = np.take_along_axis(exact, order, axis=1)
    out_items[~np.isfinite(out_scores)] = -1
    return out_items, out_scores
