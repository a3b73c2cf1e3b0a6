"""Sparse keyed tables: values per (row, column) pair, looked up without Python loops.

A pair is the int64 key ``row * n_cols + col``; keys are kept sorted, so a batch of
lookups is one ``searchsorted`` and one row's pairs are one contiguous slice. Large
batches of lookups on a table of few cells read a dense copy of the column instead (one
memory access a lookup instead of a binary search; the same values).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np

DENSE_FROM = 20_000
"""Lookups in one :meth:`PairTable.get` call from which a dense copy is worth building."""
DENSE_MAX_CELLS = 32_000_000
"""Largest rows x columns given a dense copy (128 MB of float32)."""


def run_starts(values: np.ndarray) -> np.ndarray:
    """bool per element: it begins a run of equal values (the first of each group of a
    sorted array). A request's few hundred rows: ~1 us, where ``np.r_`` took ~8."""
    out = np.empty(len(values), bool)
    if len(values):
        out[0] = True
        np.not_equal(values[1:], values[:-1], out=out[1:])
    return out


def csr_rows(indptr: np.ndarray, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rows of groups ``codes`` of a CSR layout (``indptr``), in that order, as the
    layout of those groups alone: (their new ``indptr``, the old row of each new row)."""
    lo = indptr[codes]
    counts = indptr[codes + 1] - lo
    new = np.zeros(len(codes) + 1, np.int64)
    np.cumsum(counts, out=new[1:])
    return new, np.repeat(lo - new[:-1], counts) + np.arange(new[-1])


def positions_in(sorted_values: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(position of each of ``values`` in ``sorted_values``, whether it is there)."""
    at = np.searchsorted(sorted_values, values)
    found = np.zeros(len(values), bool)
    inside = at < len(sorted_values)
    found[inside] = sorted_values[at[inside]] == values[inside]
    return at, found


@dataclass
class PairTable:
    """Sorted distinct pair keys with aligned value columns."""

    keys: np.ndarray  # int64, sorted, distinct
    n_cols: int
    columns: dict[str, np.ndarray] = field(default_factory=dict)
    _dense: dict = field(default_factory=dict, init=False, repr=False, compare=False)
    _lock: threading.Lock = field(
        default_factory=threading.Lock, init=False, repr=False, compare=False
    )

    @classmethod
    def count(
        cls, rows: np.ndarray, cols: np.ndarray, n_cols: int, weights: np.ndarray | None = None
    ) -> PairTable:
        """Number of occurrences (or summed ``weights``) of each (row, col) pair."""
        keys = rows.astype(np.int64) * n_cols + cols
        uniq, inv = np.unique(keys, return_inverse=True)
        value = np.bincount(inv, weights=weights, minlength=len(uniq)).astype(np.float32)
        return cls(uniq, n_cols, {"count": value})

    def __getstate__(self) -> dict:
        """Pickled without the dense copies and the lock (rebuilt on demand)."""
        return {k: v for k, v in self.__dict__.items() if k not in ("_dense", "_lock")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _dense={}, _lock=threading.Lock())

    def __len__(self) -> int:
        return len(self.keys)

    def of_rows(self, rows: np.ndarray) -> PairTable:
        """The pairs of table rows ``rows`` (sorted, distinct) alone, those rows numbered
        0 .. len(rows) - 1 in that order (the keys stay sorted)."""
        at, keep = positions_in(rows, self.keys // self.n_cols)
        keys = at[keep].astype(np.int64) * self.n_cols + self.keys[keep] % self.n_cols
        return PairTable(keys, self.n_cols, {n: v[keep] for n, v in self.columns.items()})

    def find(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Position of each (row, col) pair in the table, -1 when absent or row < 0."""
        q = rows.astype(np.int64) * self.n_cols + cols
        if not len(self.keys):
            return np.full(len(q), -1, np.intp)
        pos = np.searchsorted(self.keys, q)
        np.minimum(pos, len(self.keys) - 1, out=pos)
        hit = (self.keys[pos] == q) & (rows >= 0) & (cols >= 0)
        return np.where(hit, pos, -1)

    def pick(self, at: np.ndarray, name: str, missing: float) -> np.ndarray:
        """Column ``name`` at positions ``at`` (from :meth:`find`), ``missing`` at -1: one
        :meth:`find` serves several columns of the same pairs."""
        values = self.columns[name]
        out = np.full(len(at), missing, dtype=values.dtype)
        hit = at >= 0
        out[hit] = values[at[hit]]
        return out

    def get(self, name: str, rows: np.ndarray, cols: np.ndarray, missing: float) -> np.ndarray:
        """Column ``name`` for each pair, ``missing`` where the pair is absent."""
        dense = self._dense_column(name, missing) if len(rows) >= DENSE_FROM else None
        if dense is not None:
            ok = (rows >= 0) & (rows < dense.shape[0]) & (cols >= 0)
            out = np.full(len(rows), missing, dtype=dense.dtype)
            out[ok] = dense[rows[ok], cols[ok]]
            return out
        return self.pick(self.find(rows, cols), name, missing)

    def _dense_column(self, name: str, missing: float) -> np.ndarray | None:
        """Column ``name`` as a (rows, n_cols) array filled with ``missing`` (built once;
        None when the table has more than :data:`DENSE_MAX_CELLS` cells)."""
        n_rows = int(self.keys[-1] // self.n_cols) + 1 if len(self.keys) else 0
        if n_rows * self.n_cols > DENSE_MAX_CELLS:
            return None
        with self._lock:  # ranker features call this from several threads
            key = (name, repr(float(missing)))  # repr: NaN equals itself
            if key not in self._dense:
                values = self.columns[name]
                dense = np.full((n_rows, self.n_cols), missing, dtype=values.dtype)
                dense.ravel()[self.keys] = values
                self._dense[key] = dense
            return self._dense[key]

    def slices(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every pair of the given rows: (index into ``rows``, position in the table)."""
        rows = rows.astype(np.int64)
        lo = np.searchsorted(self.keys, rows * self.n_cols)
        hi = np.searchsorted(self.keys, (rows + 1) * self.n_cols)
        hi = np.where(rows >= 0, hi, lo)
        sizes = hi - lo
        owner = np.repeat(np.arange(len(rows)), sizes)
        start = np.repeat(lo - np.cumsum(sizes) + sizes, sizes)
        return owner, start + np.arange(int(sizes.sum()))

    def row_of(self, pos: np.ndarray) -> np.ndarray:
        return (self.keys[pos] // self.n_cols).astype(np.int32)

    def col_of(self, pos: np.ndarray) -> np.ndarray:
        return (self.keys[pos] % self.n_cols).astype(np.int32)


def top_per_row(
    rows: np.ndarray, cols: np.ndarray, score: np.ndarray, n_rows: int, depth: int
) -> tuple[np.ndarray, np.ndarray]:
    """The ``depth`` best columns of each row by score (ties: lower column first), padded
    with -1: (columns int32, scores float32), each (n_rows, depth)."""
    order = np.lexsort((cols, -score, rows))
    r = rows[order]
    start = np.searchsorted(r, r, side="left")
    rank = np.arange(len(r)) - start
    keep = rank < depth
    out = np.full((n_rows, depth), -1, dtype=np.int32)
    out_s = np.zeros((n_rows, depth), dtype=np.float32)
    out[r[keep], rank[keep]] = cols[order][keep]
    out_s[r[keep], rank[keep]] = score[order][keep]
    return out, out_s


def rank_within(groups: np.ndarray) -> np.ndarray:
    """0-based position of each entry within its run of equal ``groups`` (sorted input)."""
    if len(groups) == 0:
        return np.zeros(0, np.int64)
    start = np.flatnonzero(run_starts(groups))
    sizes = np.diff(np.r_[start, len(groups)])
    return np.arange(len(groups)) - np.repeat(start, sizes)
