"""Implicit-feedback ALS (``implicit``) and retrieval with its float32 factors.

Only the factor arrays are kept after fitting. Pair scores are a plain dot product per
(user, item) pair; :func:`top_n` is implicit's own exact top-k over every item.
"""

from __future__ import annotations

import functools
from contextlib import AbstractContextManager
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp


@dataclass(frozen=True)
class ALSParams:
    """Hyperparameters of the factorization (implicit's names)."""

    factors: int = 64
    regularization: float = 0.05
    alpha: float = 1.0
    iterations: int = 15
    num_threads: int = 2


def one_blas_thread() -> AbstractContextManager:
    """A context in which BLAS runs on one thread (implicit parallelises itself, and the
    live loop's calls are small). One threadpoolctl controller per process: making one
    scans every loaded library (~2 ms), and a live refresh limits twice a round. Made
    on first use, after implicit and its BLAS are loaded."""
    return _blas_controller().limit(limits=1, user_api="blas")


@functools.cache
def _blas_controller():
    import implicit.cpu.als  # the BLAS implicit calls, loaded before the scan
    import implicit.cpu.topk  # noqa: F401
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def fit_als(
    user_items: sp.csr_matrix, params: ALSParams, random_state: int
) -> tuple[np.ndarray, np.ndarray]:
    """User and item factors (float32) of implicit's CPU ALS on a customers x products
    CSR matrix, with BLAS limited to one thread (implicit parallelises itself)."""
    from implicit.cpu.als import AlternatingLeastSquares

    if user_items.dtype != np.float32 or not sp.isspmatrix_csr(user_items):
        user_items = sp.csr_matrix(user_items, dtype=np.float32)
    with one_blas_thread():  # implicit checks BLAS threads when constructed
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


def fold_in(item_factors: np.ndarray, weighted: sp.csr_matrix, params: ALSParams) -> np.ndarray:
    """ALS user factors (float32) of customers the model was not fitted on, from their
    weighted rows (customers x products, weighted as the fitted matrix was), the item
    factors held fixed: implicit's ``recalculate_user``, one least-squares solve per
    customer (what its ``recommend(..., recalculate_user=True)`` runs)."""
    from implicit.cpu.als import AlternatingLeastSquares

    with one_blas_thread():
        model = AlternatingLeastSquares(
            factors=item_factors.shape[1],
            regularization=params.regularization,
            alpha=params.alpha,
            num_threads=1,
        )
        model.item_factors = np.ascontiguousarray(item_factors, dtype=np.float32)
        users = model.recalculate_user(np.arange(weighted.shape[0]), weighted)
    return np.ascontiguousarray(users, dtype=np.float32)


def pair_scores(
    user_factors: np.ndarray, item_factors: np.ndarray, users: np.ndarray, items: np.ndarray
) -> np.ndarray:
    """Dot product of each (user, item) pair, float32; users < 0 score 0."""
    out = np.zeros(len(users), dtype=np.float32)
    step = 1 << 18  # pairs at a time: two (step, factors) gathers stay small
    for lo in range(0, len(users), step):
        u, i = users[lo : lo + step], items[lo : lo + step]
        ok = u >= 0
        out[lo : lo + step][ok] = np.einsum("ij,ij->i", user_factors[u[ok]], item_factors[i[ok]])
    return out


class CsrRows:
    """A CSR matrix's rows as implicit's ``topk`` reads its ``filter_query_items``
    (``rows[i].indices``, one row per user), without scipy's per-row indexing: that took
    0.1-0.2 ms a row, more than the top-k itself (issue 17: 0.5 s of CPU in a live
    refresh of 3,189 customers). The same items are skipped."""

    def __init__(self, matrix: sp.csr_matrix) -> None:
        matrix = sp.csr_matrix(matrix)
        self.indptr, self.indices = matrix.indptr, matrix.indices

    def __getitem__(self, row: int) -> _Row:
        return _Row(self.indices[self.indptr[row] : self.indptr[row + 1]])


@dataclass(frozen=True)
class _Row:
    indices: np.ndarray


def top_n(
    user_factors: np.ndarray,
    item_factors: np.ndarray,
    users: np.ndarray,
    n: int,
    exclude: sp.csr_matrix | None = None,
    num_threads: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Best ``n`` items per user by factor dot product: (items int32, scores float32),
    each (len(users), n), best first. Items stored in row ``i`` of ``exclude`` are
    skipped for ``users[i]``; slots left empty hold -1 and -inf.

    implicit's exact top-k (:func:`implicit.cpu.topk.topk`, what its models' ``recommend``
    runs): every item scored, one BLAS product per 100 users and a heap, on
    ``num_threads`` threads (0: one per core), BLAS on one thread each. Batch and
    real-time calls run this same code; their scores agree within float32 rounding (a
    BLAS product rounds a user's scores by the shape of the block the user is in)."""
    from implicit.cpu.topk import topk

    n = min(n, item_factors.shape[0])
    if n == 0 or len(users) == 0:
        return np.full((len(users), n), -1, np.int32), np.full((len(users), n), -np.inf, np.float32)
    with one_blas_thread():
        items, scores = topk(
            item_factors,
            user_factors[users],
            n,
            filter_query_items=None if exclude is None else CsrRows(exclude),
            num_threads=num_threads,
        )
    skipped = scores == -np.finfo(np.float32).max  # topk's mark of an excluded item
    scores[skipped] = -np.inf
    items[skipped] = -1
    return items, scores
