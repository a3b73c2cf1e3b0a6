"""Implicit-feedback ALS (``implicit``) and scoring with its float32 factors.

Only the factor arrays are kept after fitting. Pair scores are plain numpy, the same
computation for a pair in batch or alone; top-N shortlists with implicit's top-k and
then ranks by those pair scores.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

BLOCK = 4096
"""Users per step of :func:`top_n` (bounds the shortlists held in memory)."""
SLACK = 16
"""Items :func:`top_n` rescores beyond n per user: enough for the n-th exact score to
clear the shortlist's cut by more than the rounding bound (no user of a 20,000-user
sample of the batch benchmark's data needed the exact fallback with 10)."""


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
    num_threads: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Best ``n`` items per user by factor dot product: (items int32, scores float32),
    each (len(users), n), best first (ties: lower item code first). Items stored in row
    ``i`` of ``exclude`` are skipped for ``users[i]``; slots left empty hold -1.

    Scores are :func:`pair_scores`, whose value for a pair does not depend on the batch
    (a BLAS product rounds a row differently depending on its place in the block), so a
    batch gives exactly the lists of one-by-one calls. Finding them:

    1. implicit's C++ top-k (BLAS product and selection, ``num_threads`` threads, 0 = all
       cores) shortlists each user's best items by BLAS score, deep enough to hold
       ``n + SLACK`` after the exclusions, among the items with a non-zero factor vector
       (the others score exactly 0);
    2. those ``n + SLACK`` are rescored with :func:`pair_scores` and sorted;
    3. the result is kept only when provably exact: its n-th score beats, by more than
       the rounding gap between the two products (:func:`rounding_bound`), the lowest BLAS
       score rescored (what any item not rescored can reach), and beats 0 when some items
       were left out of the search for their zero factors. Other users (ties or
       near-ties at the cut, lists shorter than n) are scored exactly against every item.
    """
    n = min(n, item_factors.shape[0])
    out_items = np.full((len(users), n), -1, dtype=np.int32)
    out_scores = np.full((len(users), n), -np.inf, dtype=np.float32)
    if n == 0 or len(users) == 0:
        return out_items, out_scores
    search = _SearchSpace.of(item_factors)
    counts = np.zeros(len(users), np.int64) if exclude is None else np.diff(exclude.indptr)
    for lo in range(0, len(users), block):
        rows = np.arange(lo, min(lo + block, len(users)))
        excluded = _excluded_keys(exclude, rows, item_factors.shape[0])
        items, scores, exact = _top_n_block(
            user_factors, item_factors, search, users[rows], counts[rows], n, excluded, num_threads
        )
        for i in np.flatnonzero(~exact):
            items[i], scores[i] = _top_n_exact(
                user_factors, item_factors, users[rows[i]], n, excluded, i
            )
        out_items[rows], out_scores[rows] = items, scores
    out_items[~np.isfinite(out_scores)] = -1
    return out_items, out_scores


def rounding_bound(user_factors: np.ndarray, item_norm: float) -> np.ndarray:
    """Per user, a bound on |BLAS dot product - :func:`pair_scores`| for any item whose
    factor norm is at most ``item_norm``: each float32 sum of d products is within
    d * eps / 2 * |u| * |v| of the exact value whatever its order (Cauchy-Schwarz bounds
    the sum of |products|); both sums together, doubled for safety."""
    d = user_factors.shape[1]
    norms = np.linalg.norm(user_factors.astype(np.float64), axis=1)
    return 2.0 * d * float(np.finfo(np.float32).eps) * norms * item_norm


@dataclass(frozen=True)
class _SearchSpace:
    """The items worth searching: those with a non-zero factor vector (an item nobody
    interacted with keeps zero factors and scores exactly 0 for everyone)."""

    codes: np.ndarray  # int32 item codes with non-zero factors
    factors: np.ndarray  # float32 (len(codes), factors), C-contiguous
    max_norm: float
    complete: bool  # every item is in the search

    @classmethod
    def of(cls, item_factors: np.ndarray) -> _SearchSpace:
        codes = np.flatnonzero(np.any(item_factors != 0, axis=1)).astype(np.int32)
        factors = np.ascontiguousarray(item_factors[codes], dtype=np.float32)
        norm = float(np.linalg.norm(factors.astype(np.float64), axis=1).max(initial=0.0))
        return cls(codes, factors, norm, len(codes) == item_factors.shape[0])


def _excluded_keys(exclude: sp.csr_matrix | None, rows: np.ndarray, n_items: int) -> np.ndarray:
    """Sorted ``position in rows * n_items + item`` keys of the block's excluded pairs."""
    if exclude is None:
        return np.zeros(0, np.int64)
    start, stop = exclude.indptr[rows[0]], exclude.indptr[rows[-1] + 1]
    owner = np.repeat(np.arange(len(rows)), np.diff(exclude.indptr[rows[0] : rows[-1] + 2]))
    return np.sort(owner * np.int64(n_items) + exclude.indices[start:stop])


def _is_excluded(keys: np.ndarray, excluded: np.ndarray) -> np.ndarray:
    if len(excluded) == 0:
        return np.zeros(keys.shape, bool)
    at = np.minimum(np.searchsorted(excluded, keys), len(excluded) - 1)
    return excluded[at] == keys


def _top_n_block(
    user_factors: np.ndarray,
    item_factors: np.ndarray,
    search: _SearchSpace,
    users: np.ndarray,
    counts: np.ndarray,
    n: int,
    excluded: np.ndarray,
    num_threads: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Steps 1-3 of :func:`top_n` for one block of users: (items, scores, exact), where
    ``exact`` is False for the users whose list could not be proved exact."""
    items = np.full((len(users), n), -1, dtype=np.int32)
    scores = np.full((len(users), n), -np.inf, dtype=np.float32)
    exact = np.zeros(len(users), bool)
    n_search = len(search.codes)
    if n_search == 0:
        return items, scores, exact
    keep = n + SLACK
    # users grouped by shortlist depth (powers of two): one top-k call per group
    depth = 2 ** np.ceil(np.log2(keep + counts)).astype(np.int64)
    depth = np.minimum(depth, n_search)
    for d in np.unique(depth):
        group = np.flatnonzero(depth == d)
        short, blas = _shortlist(search.factors, user_factors[users[group]], int(d), num_threads)
        short = search.codes[short]
        key = group[:, None] * np.int64(item_factors.shape[0]) + short
        # the first `keep` items left after the exclusions, best BLAS score first
        allowed = ~_is_excluded(key, excluded)
        kept = allowed & (np.cumsum(allowed, axis=1) <= keep)
        left_out = (d < n_search) | (allowed & ~kept).any(axis=1)
        cut = np.where(kept, blas, np.inf).min(axis=1)
        score = np.full(short.shape, -np.inf, np.float32)
        score[kept] = pair_scores(
            user_factors, item_factors, np.repeat(users[group], kept.sum(axis=1)), short[kept]
        )
        order = np.lexsort((short, -score), axis=1)[:, :n]  # d < n: a short search space
        items[group, : order.shape[1]] = np.take_along_axis(short, order, axis=1)
        scores[group, : order.shape[1]] = np.take_along_axis(score, order, axis=1)
        nth = scores[group, n - 1]
        gap = rounding_bound(user_factors[users[group]], search.max_norm)
        beats_rest = ~left_out | (nth > cut + gap)
        exact[group] = beats_rest & (search.complete | (nth > 0))
    return items, scores, exact


def _shortlist(
    factors: np.ndarray, queries: np.ndarray, k: int, num_threads: int
) -> tuple[np.ndarray, np.ndarray]:
    """(positions in ``factors``, BLAS scores) of each query's k best rows: implicit's
    top-k, its threads over blocks of queries with BLAS itself on one thread."""
    from implicit.cpu.topk import topk
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, "blas"):
        ids, scores = topk(factors, np.ascontiguousarray(queries), k, num_threads=num_threads)
    return ids, scores


def _top_n_exact(
    user_factors: np.ndarray,
    item_factors: np.ndarray,
    user: int,
    n: int,
    excluded: np.ndarray,
    row: int,
) -> tuple[np.ndarray, np.ndarray]:
    """One user's list from :func:`pair_scores` against every item (the slow, sure way)."""
    n_items = item_factors.shape[0]
    every = np.arange(n_items, dtype=np.int32)
    score = pair_scores(user_factors, item_factors, np.full(n_items, user), every)
    score[_is_excluded(row * np.int64(n_items) + every, excluded)] = -np.inf
    order = np.lexsort((every, -score))[:n]
    return every[order], score[order]
