"""The few numpy helpers every builder uses: grouped counts, minima, distinct keys, ratios.

Groups are dense integer keys (window band x customer, channel x customer ...), so a
grouped count or sum is one ``np.bincount``, a grouped minimum one ``np.minimum.at``,
and distinct counts one sort of integer keys. No Python loop runs over rows.
"""

from __future__ import annotations

import numpy as np

NEVER = np.iinfo(np.int32).max
"""Age (seconds) of something that never happened: larger than any real age."""
SECONDS_PER_DAY = 86_400


def counts(key: np.ndarray, n_groups: int, weights: np.ndarray | None = None) -> np.ndarray:
    """Rows (or the sum of ``weights``, added in row order) per group ``0 .. n_groups - 1``."""
    return np.bincount(key, weights=weights, minlength=n_groups)[:n_groups]


def minimum(key: np.ndarray, values: np.ndarray, n_groups: int, fill: int) -> np.ndarray:
    """Smallest value per group (``fill`` where a group has no row)."""
    out = np.full(n_groups, fill, dtype=values.dtype)
    np.minimum.at(out, key, values)
    return out


def maximum(key: np.ndarray, values: np.ndarray, n_groups: int, fill: int) -> np.ndarray:
    """Largest value per group (``fill`` where a group has no row)."""
    out = np.full(n_groups, fill, dtype=values.dtype)
    np.maximum.at(out, key, values)
    return out


def distinct(keys: np.ndarray) -> np.ndarray:
    """Sorted distinct integer keys (one sort: faster than hashing, or ``np.unique``).

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

    Divided in float64 and rounded once to float32 (the correctly rounded quotient).
    """
    num, den = np.asarray(num), np.asarray(den)
    if scale != 1.0:
        num = np.multiply(num, scale, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.true_divide(num, den, dtype=np.float64).astype(np.float32)
    np.putmask(out, den == 0, np.float32(undefined))
    return out


def days(age_s: np.ndarray, cap: float) -> np.ndarray:
    """Ages in seconds as float32 days; ``NEVER`` (nothing seen) becomes ``cap``."""
    out = np.empty(np.shape(age_s), dtype=np.float32)
    np.true_divide(age_s, SECONDS_PER_DAY, out=out)  # in float64, rounded once
    np.putmask(out, age_s == NEVER, np.float32(cap))
    return out
