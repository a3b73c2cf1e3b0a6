"""Implicit-feedback ALS (``implicit``) and scoring with its float32 factors.

Only the factor arrays are kept after fitting. Pair scores are plain numpy, the same
computation for a pair in batch or alone; top-N shortlists with a BLAS product and
then ranks by those pair scores.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import scipy.sparse as sp

from training.recs.parallel import thread_map

BLOCK = 64
"""Users per BLAS product in :func:`top_n` (a block's scores stay near the caches)."""
GROUPS = 16
"""Column groups of :func:`_best_positions`."""
SLACK = 16
"""Items :func:`top_n` rescores beyond n per user: enough for the n-th exact score to
clear the shortlist's cut by more than the rounding bound (no user of a 20,000-user
sample of the batch benchmark's data needed the exact fallback with 10)."""
SCREEN_FROM = 8192
"""Searched items from which :func:`top_n` shortlists with the native screening kernel
(:mod:`training.recs.screen_kernel`) instead of a BLAS product and a partition."""
SCREEN_BLOCK = 240
"""Users per kernel call (a multiple of its 6-user register block)."""
PROBE = 2048
"""Items whose scores set each user's screening threshold: those of largest factor norm
(on the batch benchmark's data a user then keeps ~200 of 50,000 items; 1,024: ~420)."""
SCREEN_CAP = 1024
"""Items the kernel may keep per user; a user past it is shortlisted the BLAS way."""


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
    block: int | None = None,
    num_threads: int = 0,
    screen: bool | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Best ``n`` items per user by factor dot product: (items int32, scores float32),
    each (len(users), n), best first (ties: lower item code first). Items stored in row
    ``i`` of ``exclude`` are skipped for ``users[i]``; slots left empty hold -1.

    Scores are :func:`pair_scores`, whose value for a pair does not depend on the batch
    (a BLAS product rounds a row differently depending on its place in the block), so a
    batch gives exactly the lists of one-by-one calls. Finding them, ``block`` users at
    a time on ``num_threads`` threads (0: one per core; BLAS on one thread each):

    1. a BLAS product scores every item with a non-zero factor vector (the others score
       exactly 0), excluded items set to -inf, and :func:`_best_positions` shortlists
       the ``n + SLACK`` best by that score; or, with ``screen`` (default: from
       ``SCREEN_FROM`` searched items and ``SCREEN_BLOCK`` users), the native kernel
       keeps only the items reaching a threshold that lets the ``n + SLACK`` best
       through (:func:`_screened_block`), and the shortlist is taken from those;
    2. the shortlist is rescored with :func:`pair_scores` and sorted;
    3. the result is kept only when provably exact: its n-th score beats, by more than
       the rounding gap between the two products (:func:`rounding_bound`), the lowest
       shortlisted score of the first product (what any item not shortlisted can
       reach), and beats 0 when some items were left out of the search for their zero
       factors. Other users (ties or near-ties at the cut, lists shorter than n) are
       scored exactly against every item.
    """
    from threadpoolctl import threadpool_limits

    n = min(n, item_factors.shape[0])
    out_items = np.full((len(users), n), -1, dtype=np.int32)
    out_scores = np.full((len(users), n), -np.inf, dtype=np.float32)
    if n == 0 or len(users) == 0:
        return out_items, out_scores
    search = _SearchSpace.cached(item_factors)
    if screen is None:  # a real-time request (a few users) stays on the BLAS way
        screen = len(search.codes) >= SCREEN_FROM and len(users) >= SCREEN_BLOCK
    find = _screened_block if screen else _top_n_block
    if screen:
        search.prepare_screening()  # once here, not in each thread
    block = block or (SCREEN_BLOCK if screen else BLOCK)

    def run(lo: int) -> tuple[slice, tuple[np.ndarray, np.ndarray]]:
        rows = slice(lo, min(lo + block, len(users)))
        excluded = _excluded_pairs(exclude, rows)
        return rows, find(user_factors, item_factors, search, users[rows], n, excluded)

    with threadpool_limits(1, "blas"):
        for rows, (items, scores) in thread_map(run, range(0, len(users), block), num_threads):
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
    interacted with keeps zero factors and scores exactly 0 for everyone), laid out for
    :func:`_best_positions`: column ``p`` of a block's scores is item ``codes[p]``, and
    the columns form ``GROUPS`` rows of ``width`` (padding columns score -inf)."""

    codes: np.ndarray  # int32 item codes with non-zero factors
    column_item: np.ndarray  # int32 item code per column, -1 for padding
    factors_t: np.ndarray  # float32 (factors, GROUPS * width), zero padded
    position: np.ndarray  # int64 per item code: its column, -1 when not searched
    width: int
    max_norm: float
    complete: bool  # every item is in the search

    def prepare_screening(self) -> None:
        """Build :attr:`tiles` and :attr:`probe` now (they are built on first use)."""
        self.tiles, self.probe  # noqa: B018

    @cached_property
    def tiles(self) -> np.ndarray:
        """The searched items' factors (column order) laid out for the screening kernel."""
        from training.recs.screen_kernel import pack_tiles

        return pack_tiles(self.factors_t[:, : len(self.codes)].T)

    @cached_property
    def probe(self) -> tuple[np.ndarray, np.ndarray]:
        """(factors (d, P), probe column per searched column or -1) of the ``PROBE``
        searched items of largest factor norm (ties: lower column), P <= a quarter of
        the search."""
        factors = self.factors_t[:, : len(self.codes)]
        norms = np.linalg.norm(factors.astype(np.float64), axis=0)
        chosen = np.sort(np.argsort(-norms, kind="stable")[: min(PROBE, len(self.codes) // 4)])
        column = np.full(len(self.codes), -1, np.int64)
        column[chosen] = np.arange(len(chosen))
        return np.ascontiguousarray(factors[:, chosen]), column

    @classmethod
    def cached(cls, item_factors: np.ndarray) -> _SearchSpace:
        """:meth:`of`, kept for the last factor array seen (batch scoring calls
        :func:`top_n` once a chunk with the same item factors; ~40 ms a call at 50,000
        items). Factor arrays are never changed in place, only replaced."""
        last = _LAST_SEARCH
        if last and last[0] is item_factors:
            return last[1]
        search = cls.of(item_factors)
        _LAST_SEARCH[:] = [item_factors, search]
        return search

    @classmethod
    def of(cls, item_factors: np.ndarray) -> _SearchSpace:
        codes = np.flatnonzero(np.any(item_factors != 0, axis=1)).astype(np.int32)
        width = -(-len(codes) // GROUPS)
        factors_t = np.zeros((item_factors.shape[1], GROUPS * width), np.float32)
        factors_t[:, : len(codes)] = item_factors[codes].T
        position = np.full(item_factors.shape[0], -1, np.int64)
        position[codes] = np.arange(len(codes))
        column_item = np.full(GROUPS * width, -1, np.int32)
        column_item[: len(codes)] = codes
        norms = np.linalg.norm(item_factors[codes].astype(np.float64), axis=1)
        return cls(
            codes,
            column_item,
            factors_t,
            position,
            width,
            float(norms.max(initial=0.0)),
            len(codes) == item_factors.shape[0],
        )


_LAST_SEARCH: list = []  # [item_factors, its _SearchSpace]: see _SearchSpace.cached


def _excluded_pairs(exclude: sp.csr_matrix | None, rows: slice) -> tuple[np.ndarray, np.ndarray]:
    """(row within the block, item code) of the block's excluded pairs, no duplicates."""
    if exclude is None:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    indptr = exclude.indptr[rows.start : rows.stop + 1]
    owner = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
    items = exclude.indices[indptr[0] : indptr[-1]].astype(np.int64)
    keys = np.unique(owner * np.int64(exclude.shape[1]) + items)
    return keys // exclude.shape[1], keys % exclude.shape[1]


def _searched_exclusions(
    search: _SearchSpace, excluded: tuple[np.ndarray, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """(row, search column) of the excluded pairs whose item is searched."""
    column = search.position[excluded[1]]
    searched = column >= 0
    return excluded[0][searched], column[searched]


def _top_n_block(
    user_factors: np.ndarray,
    item_factors: np.ndarray,
    search: _SearchSpace,
    users: np.ndarray,
    n: int,
    excluded: tuple[np.ndarray, np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`top_n` for one block of users (``excluded``: (row, item) pairs), shortlisted
    with a BLAS product of every searched item."""
    n_search = len(search.codes)
    if not n_search:
        return _finish(user_factors, item_factors, search, users, n, excluded, None)
    blas = user_factors[users] @ search.factors_t
    blas[:, n_search:] = -np.inf
    rows, column = _searched_exclusions(search, excluded)
    blas[rows, column] = -np.inf
    short = _best_positions(blas, min(n + SLACK, n_search), search.width)
    short_blas = np.take_along_axis(blas, short, axis=1)
    n_allowed = n_search - np.bincount(rows, minlength=len(users))
    shortlist = (search.column_item[short], short_blas, n_allowed)
    return _finish(user_factors, item_factors, search, users, n, excluded, shortlist)


def _screened_block(
    user_factors: np.ndarray,
    item_factors: np.ndarray,
    search: _SearchSpace,
    users: np.ndarray,
    n: int,
    excluded: tuple[np.ndarray, np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`top_n` for one block of users, shortlisted with the screening kernel.

    A user's threshold is the m-th best (m = n + SLACK) BLAS score among the allowed
    probe items, lowered by the rounding bound: m allowed items then score at least
    that in the kernel too, so its m best lie among the items kept, and any item not
    kept scores below all of them. Users whose kept items overflow ``SCREEN_CAP`` are
    shortlisted by :func:`_top_n_block`."""
    from training.recs.screen_kernel import screen

    n_search = len(search.codes)
    m = min(n + SLACK, n_search)
    factors = user_factors[users]
    probe_factors, probe_column = search.probe
    rows, column = _searched_exclusions(search, excluded)
    if probe_factors.shape[1] >= m:
        probe = factors @ probe_factors
        at = probe_column[column]
        probe[rows[at >= 0], at[at >= 0]] = -np.inf
        cut = np.partition(probe, probe.shape[1] - m, axis=1)[:, probe.shape[1] - m]
        limit = cut - rounding_bound(factors, search.max_norm)
    else:
        limit = np.full(len(users), -np.inf)
    limit32 = limit.astype(np.float32)
    limit32 = np.where(limit32 > limit, np.nextafter(limit32, np.float32(-np.inf)), limit32)
    columns, scores, counts = screen(factors, search.tiles, limit32, SCREEN_CAP)
    width = int(min(counts.max(initial=0), SCREEN_CAP))
    columns, scores = columns[:, :width], scores[:, :width]
    valid = np.arange(width) < np.minimum(counts, SCREEN_CAP)[:, None]
    valid &= columns < n_search  # the last tile's zero padding
    kept_at = np.flatnonzero(valid.ravel())  # row-major: (row, column) ascending
    if len(rows) and len(kept_at):
        key = (kept_at // width) * n_search + columns.ravel()[kept_at]
        drop = rows * n_search + column
        hit = np.minimum(np.searchsorted(key, drop), len(key) - 1)
        hit = hit[key[hit] == drop]
        valid.ravel()[kept_at[hit]] = False
    scores = np.where(valid, scores, -np.inf)
    if width > m:
        best = np.argpartition(scores, width - m, axis=1)[:, width - m :]
        columns = np.take_along_axis(columns, best, axis=1)
        scores = np.take_along_axis(scores, best, axis=1)
    n_allowed = n_search - np.bincount(rows, minlength=len(users))
    shortlist = (search.column_item[np.where(np.isfinite(scores), columns, 0)], scores, n_allowed)
    items, best_scores = _finish(user_factors, item_factors, search, users, n, excluded, shortlist)
    over = np.flatnonzero(counts > SCREEN_CAP)
    if len(over):
        mine = np.isin(excluded[0], over)
        redo = (np.searchsorted(over, excluded[0][mine]), excluded[1][mine])
        items[over], best_scores[over] = _top_n_block(
            user_factors, item_factors, search, users[over], n, redo
        )
    return items, best_scores


def _finish(
    user_factors: np.ndarray,
    item_factors: np.ndarray,
    search: _SearchSpace,
    users: np.ndarray,
    n: int,
    excluded: tuple[np.ndarray, np.ndarray],
    shortlist: tuple[np.ndarray, np.ndarray, np.ndarray] | None,
) -> tuple[np.ndarray, np.ndarray]:
    """A block's lists from its shortlist (item codes and approximate scores, (users,
    width), -inf: no item; and the searched items each user may get): rescored with
    :func:`pair_scores` and sorted, kept where provably exact (see :func:`top_n`), every
    other user scored against every item."""
    items = np.full((len(users), n), -1, dtype=np.int32)
    scores = np.full((len(users), n), -np.inf, dtype=np.float32)
    exact = np.zeros(len(users), bool)
    if shortlist is not None:
        short, approx, n_allowed = shortlist
        kept = approx > -np.inf
        cut = np.where(kept, approx, np.inf).min(axis=1)
        score = np.full(short.shape, -np.inf, np.float32)
        score[kept] = pair_scores(
            user_factors, item_factors, np.repeat(users, kept.sum(axis=1)), short[kept]
        )
        order = np.lexsort((short, -score), axis=1)[:, :n]  # fewer than n: a short search
        items[:, : order.shape[1]] = np.take_along_axis(short, order, axis=1)
        scores[:, : order.shape[1]] = np.take_along_axis(score, order, axis=1)
        nth = scores[:, n - 1]
        left_out = kept.sum(axis=1) < n_allowed
        gap = rounding_bound(user_factors[users], search.max_norm)
        exact = (~left_out | (nth > cut + gap)) & (search.complete | (nth > 0))
    for i in np.flatnonzero(~exact):
        mine = excluded[1][excluded[0] == i]
        items[i], scores[i] = _top_n_exact(user_factors, item_factors, users[i], n, mine)
    return items, scores


def _best_positions(scores: np.ndarray, d: int, width: int) -> np.ndarray:
    """Column positions of each row's ``d`` largest scores (ties: any), (rows, d).

    Cheaper than a partition of every row: the columns form groups (``p % width``); a
    row's d best scores lie in its d groups of largest maximum (a group whose maximum is
    below the d-th best score cannot hold one), so one partition of the group maxima and
    one of those groups' scores find them."""
    n_rows, n_cols = scores.shape
    if d >= n_cols:
        return np.broadcast_to(np.arange(n_cols), (n_rows, n_cols)).copy()
    groups = scores.reshape(n_rows, -1, width).max(axis=1)
    if d < width:
        top = np.argpartition(groups, width - d, axis=1)[:, width - d :]
    else:
        top = np.broadcast_to(np.arange(width), (n_rows, width))
    offsets = np.arange(n_cols // width) * width
    candidates = (top[:, None, :] + offsets[None, :, None]).reshape(n_rows, -1)
    values = np.take(scores, candidates + np.arange(n_rows)[:, None] * n_cols)
    if candidates.shape[1] > d:
        best = np.argpartition(values, candidates.shape[1] - d, axis=1)[:, -d:]
        candidates = np.take_along_axis(candidates, best, axis=1)
    return candidates


def _top_n_exact(
    user_factors: np.ndarray, item_factors: np.ndarray, user: int, n: int, excluded: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """One user's list from :func:`pair_scores` against every item (the slow, sure way)."""
    n_items = item_factors.shape[0]
    every = np.arange(n_items, dtype=np.int32)
    score = pair_scores(user_factors, item_factors, np.full(n_items, user), every)
    score[excluded] = -np.inf
    order = np.lexsort((every, -score))[:n]
    return every[order], score[order]
