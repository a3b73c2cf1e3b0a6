"""The one comparison for answers of two scoring runs (batch and real time, Spark and
local, a batch and one-by-one calls, precomputed and computed lists): scores within a
tolerance, and ranked lists equal wherever the scores tell the items apart.

Issue 15: the runs share one code path but not their float rounding (a BLAS product
rounds a user's scores by the block the user is in; numpy picks SIMD loops by CPU), so
they are not compared bit for bit. One code path run twice on the same input is still
compared exactly, with pandas' or numpy's own asserts.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

TOL = 1e-6
"""Scores may differ by this much, relative to their size (absolute below 1)."""


def close(a: np.ndarray, b: np.ndarray, tol: float = TOL) -> np.ndarray:
    """Element-wise: within ``tol`` (relative, absolute below 1), NaN equal to NaN."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    same = np.isclose(a, b, rtol=tol, atol=tol, equal_nan=True)
    return same | (a == b)  # equal infinities


def assert_same_list(
    items_a: Sequence,
    scores_a: np.ndarray,
    items_b: Sequence,
    scores_b: np.ndarray,
    tol: float = TOL,
    what: str = "list",
) -> None:
    """Two ranked lists, best first: the same length, scores within ``tol`` rank by
    rank, and the same item at every rank whose score stands more than ``tol`` apart
    from its neighbours' (near-ties may come out in either order; the last rank may
    hold an item near-tied with the first one below the cut)."""
    items_a, items_b = np.asarray(items_a), np.asarray(items_b)
    scores_a = np.asarray(scores_a, np.float64)
    scores_b = np.asarray(scores_b, np.float64)
    assert len(items_a) == len(items_b), f"{what}: {len(items_a)} items against {len(items_b)}"
    off = np.flatnonzero(~close(scores_a, scores_b, tol))
    assert not len(off), (
        f"{what}: scores differ at rank {off[0]}: {scores_a[off[0]]!r} != {scores_b[off[0]]!r}"
    )
    tied_next = np.r_[close(scores_a[1:], scores_a[:-1], tol), True]  # the end: unknown
    tied = tied_next | np.r_[False, tied_next[:-1]]
    differ = np.flatnonzero(~tied & (items_a != items_b))
    assert not len(differ), (
        f"{what}: rank {differ[0]} holds {items_a[differ[0]]!r} against "
        f"{items_b[differ[0]]!r} (score {scores_a[differ[0]]!r}, no near-tie)"
    )
    if len(items_a) > 1:  # near-tied runs hold the same items, in some order
        start = np.flatnonzero(np.r_[True, ~tied_next[:-1]])
        for lo, hi in zip(start, [*start[1:], len(items_a)], strict=True):
            if hi < len(items_a):  # a run that reaches the end may continue past the cut
                assert sorted(items_a[lo:hi]) == sorted(items_b[lo:hi]), (
                    f"{what}: near-tied ranks {lo}-{hi - 1} hold different items"
                )


def assert_same_lists(
    items_a: np.ndarray,
    scores_a: np.ndarray,
    items_b: np.ndarray,
    scores_b: np.ndarray,
    tol: float = TOL,
) -> None:
    """:func:`assert_same_list` row by row of (users, n) arrays (-1 / -inf: empty slot)."""
    assert np.shape(items_a) == np.shape(items_b)
    for row in range(len(items_a)):
        ok_a, ok_b = np.isfinite(scores_a[row]), np.isfinite(scores_b[row])
        assert_same_list(
            items_a[row][ok_a],
            scores_a[row][ok_a],
            items_b[row][ok_b],
            scores_b[row][ok_b],
            tol,
            what=f"row {row}",
        )


def assert_same_answers(
    a_frames: pd.DataFrame | Sequence[pd.DataFrame],
    b_frames: pd.DataFrame | Sequence[pd.DataFrame],
    tol: float = TOL,
) -> None:
    """Frames of two runs, pair by pair: recommendation frames (``customer_id``,
    ``rank``, ``product_id``, ``score``, ``reason``) list by list with
    :func:`assert_same_list`; any other frame row by row (same order): float columns
    within ``tol``, the others equal, ``best_channel`` only where the two most likely
    channels are more than ``tol`` apart. Dtypes may differ (str / category / object)."""
    if isinstance(a_frames, pd.DataFrame):
        a_frames, b_frames = [a_frames], [b_frames]
    assert len(a_frames) == len(b_frames)
    for a, b in zip(a_frames, b_frames, strict=True):
        assert sorted(a.columns) == sorted(b.columns), f"{list(a.columns)} != {list(b.columns)}"
        if {"rank", "product_id", "score"} <= set(a.columns):
            _same_recommendations(a, b, tol)
        else:
            _same_rows(a, b, tol)


def _same_recommendations(a: pd.DataFrame, b: pd.DataFrame, tol: float) -> None:
    order = ["customer_id", "rank"]
    a = a.astype({"reason": "str"}).sort_values(order, ignore_index=True)
    b = b.astype({"reason": "str"}).sort_values(order, ignore_index=True)
    ids_a, ids_b = pd.unique(a["customer_id"]), pd.unique(b["customer_id"])
    assert list(ids_a) == list(ids_b), "different customers"
    by_a, by_b = a.groupby("customer_id", sort=False), b.groupby("customer_id", sort=False)
    for customer in ids_a:
        x, y = by_a.get_group(customer), by_b.get_group(customer)
        assert x["rank"].tolist() == list(range(1, len(x) + 1)), f"{customer}: ranks"
        products = [f"{p}|{r}" for p, r in zip(x["product_id"], x["reason"], strict=True)]
        theirs = [f"{p}|{r}" for p, r in zip(y["product_id"], y["reason"], strict=True)]
        assert_same_list(
            products, x["score"].to_numpy(), theirs, y["score"].to_numpy(), tol, str(customer)
        )


def _same_rows(a: pd.DataFrame, b: pd.DataFrame, tol: float) -> None:
    assert len(a) == len(b), f"{len(a)} rows against {len(b)}"
    a, b = a.reset_index(drop=True), b.reset_index(drop=True)
    check = np.ones(len(a), bool)
    p_cols = [c for c in a.columns if c.startswith("p_")]
    if "best_channel" in a.columns and len(p_cols) > 1:
        top2 = np.sort(np.nan_to_num(a[p_cols].to_numpy(np.float64), nan=-1.0), axis=1)[:, -2:]
        check = ~close(top2[:, 0], top2[:, 1], tol)
    for column in a.columns:
        x, y = a[column], b[column]
        if pd.api.types.is_float_dtype(x) or pd.api.types.is_float_dtype(y):
            off = np.flatnonzero(~close(x.to_numpy(np.float64), y.to_numpy(np.float64), tol))
        else:
            rows = check if column == "best_channel" else np.ones(len(a), bool)
            x_obj, y_obj = x.astype(object).where(x.notna(), None), y.astype(object)
            y_obj = y_obj.where(y.notna(), None)
            off = np.flatnonzero(rows & (x_obj.to_numpy() != y_obj.to_numpy()))
        assert not len(off), f"{column}, row {off[0]}: {x.iloc[off[0]]!r} != {y.iloc[off[0]]!r}"
