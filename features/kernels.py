"""Grouped numpy arithmetic over integer keys: the few primitives every builder uses.

Groups are dense integer keys (cell x window band x customer ...), so a grouped count,
sum or minimum is one pass of a compiled scatter loop (or ``np.bincount``); distinct
counts sort int64 keys once. No Python loop ever runs over rows.
"""

from __future__ import annotations

import numpy as np

from features import divide, scatter
from features.memory import random_access

NEVER = np.iinfo(np.int32).max
"""Age (seconds) of something that never happened: larger than any real age."""
SECONDS_PER_DAY = 86_400


def counts(key: np.ndarray, n_groups: int, weights: np.ndarray | None = None) -> np.ndarray:
    """Rows (or the sum of ``weights``) per group ``0 .. n_groups - 1``."""
    return np.bincount(key, weights=weights, minlength=n_groups)[:n_groups]


def accumulate(key: np.ndarray, n_groups: int, weights: np.ndarray | None = None) -> np.ndarray:
    """Like :func:`counts`, but int32 counts (or float64 sums, added in row order) from a
    compiled scatter loop (:mod:`features.scatter`): half the output of ``bincount`` to
    fault in and convert."""
    key = _scatter_key(key)
    if weights is None:
        out = random_access(n_groups, np.int32, 0)
        scatter.count(out, key)
    else:
        out = random_access(n_groups, np.float64, 0.0)
        scatter.add(out, key, weights)
    return out


def minimum(key: np.ndarray, values: np.ndarray, n_groups: int, fill: int) -> np.ndarray:
    """Smallest value per group (``fill`` where a group has no row)."""
    out = random_access(n_groups, values.dtype, fill)
    if out.dtype in scatter.MIN_VALUES:
        scatter.minimum(out, _scatter_key(key), values)
    else:  # floats: numpy's NaN rules
        np.minimum.at(out, key, values)
    return out


def _scatter_key(key: np.ndarray) -> np.ndarray:
    """``key`` as a contiguous int32 / int64 array (a copy only when it is not one)."""
    key = np.ascontiguousarray(key)
    return key if key.dtype in scatter.KEYS else key.astype(np.int64)


def distinct(keys: np.ndarray) -> np.ndarray:
    """Sorted distinct int64 keys (one sort: faster than hashing for millions of keys).

    Keys that fit in int32 are sorted as int32, twice as fast as int64.
    """
    if len(keys) == 0:
        return keys
    i32 = np.iinfo(np.int32)
    if keys.dtype.itemsize > 4 and i32.min <= keys.min() and keys.max() <= i32.max:
        return distinct(keys.astype(np.int32)).astype(keys.dtype)
    s = np.sort(keys)
    keep = np.empty(len(s), dtype=bool)
    keep[0] = True
    np.not_equal(s[1:], s[:-1], out=keep[1:])
    return s[keep]


def ratio(num: np.ndarray, den: np.ndarray, undefined: float, scale: float = 1.0) -> np.ndarray:
    """``scale * num / den`` as float32, ``undefined`` where ``den == 0``.

    Two 1-d arrays of one length go through one compiled pass (:mod:`features.divide`,
    divided in float64 and rounded once); anything else (broadcasting, other dtypes)
    takes one float32 division with the inputs cast on the fly, then ``putmask``.
    """
    num, den = np.asarray(num), np.asarray(den)
    if (
        num.ndim == 1
        and num.shape == den.shape
        and num.dtype in divide.TYPES
        and den.dtype in divide.TYPES
    ):
        return divide.ratio(num, den, undefined, scale)
    if scale != 1.0:
        num = num * np.float32(scale)  # in the wider type, rounded once by the division
    out = np.empty(np.broadcast_shapes(np.shape(num), np.shape(den)), dtype=np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        np.divide(num, den, out=out, dtype=np.float32)
    np.putmask(out, np.broadcast_to(den == 0, out.shape), np.float32(undefined))
    return out


def days(age_s: np.ndarray, cap: float) -> np.ndarray:
    """Ages in seconds as float32 days; ``NEVER`` (nothing seen) becomes ``cap``."""
    out = np.empty(np.shape(age_s), dtype=np.float32)
    np.true_divide(age_s, SECONDS_PER_DAY, out=out)  # in float64, rounded once
    np.putmask(out, age_s == NEVER, np.float32(cap))
    return out
