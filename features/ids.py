"""Fast, exact factorization of string id columns into integer codes.

Turning 10M customer ids into codes is the most expensive step of a feature build: a
hash table of 1M strings does not fit in cache, and ``pd.factorize`` (or Arrow's
``dictionary_encode``) spends most of its time waiting on memory. Here the id bytes
are read straight from the Arrow buffers as 64-bit words. An id of up to 8 bytes *is*
its key (exact); longer ids are hashed to 64 bits and every row is then compared with
its group's first row, so a hash collision can never merge two ids (it falls back to
Arrow). Keys are split into 64 cache-sized partitions by their top bits (a one-byte
radix sort) and each partition is hashed on its own. With ``sort`` the codes follow
the sorted order of the ids, so results never depend on row order.
"""

from __future__ import annotations

import itertools
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

_MUL = np.uint64(0x9E3779B97F4A7C15)  # odd: multiplying by it is a bijection on uint64
_MUL_INV = np.uint64(pow(0x9E3779B97F4A7C15, -1, 1 << 64))
_MIX = np.uint64(0xFF51AFD7ED558CCD)
_LOW56 = np.uint64((1 << 56) - 1)
_PARTITION_BITS = 6
_PARTITION_MIN_ROWS = 1 << 21  # below this one hash table fits well enough in cache
_MAX_WORDS = 8  # ids longer than 64 bytes take Arrow's dictionary encoding
_RUN_SHARE = 0.7  # collapse adjacent repeats when fewer than this share of rows start a run

STR = pd.StringDtype("pyarrow", na_value=np.nan)


def _threads() -> int:
    """Threads for partitioned hashing: the machine's cores, at most 8."""
    return max(1, min(8, os.cpu_count() or 1))


def factorize(
    *columns: Any, sort: bool = True, uniques: bool = True
) -> tuple[list[np.ndarray], pd.Index | None]:
    """Codes (int32, -1 for null) for each column over one shared set of distinct ids.

    ``columns`` are string-like pandas Series or Arrow arrays. With ``sort`` code ``i``
    is the ``i``-th smallest id, whatever the row order. ``uniques=False`` skips
    building the index of distinct ids (returned as None) when only groups matter.
    """
    if len(columns) == 1 and isinstance(getattr(columns[0], "dtype", None), pd.CategoricalDtype):
        return _from_categorical(columns[0], sort)
    arrays = [_as_string_array(c) for c in columns]
    parts = [_words(a) for a in arrays]
    if any(p is None for p in parts):
        return _generic(arrays, sort)
    groupings = [_Grouping(words, ln) for words, ln, _ in parts]
    if any(g.collision for g in groupings):  # two different ids hashed alike: stay exact
        return _generic(arrays, sort)
    if len(groupings) == 1:
        merged = groupings[0]
        ranks = [merged.rank(sort)]
    else:  # group each column's distinct ids (few) together: one shared numbering
        width = max(len(g.words) for g in groupings)
        words = [np.concatenate([_word(g.words, j) for g in groupings]) for j in range(width)]
        merged = _Grouping(words, np.concatenate([g.lengths for g in groupings]))
        if merged.collision:
            return _generic(arrays, sort)
        shared = merged.codes(merged.rank(sort))
        bounds = np.cumsum([0, *(len(g.lengths) for g in groupings)])
        ranks = [shared[a:b] for a, b in itertools.pairwise(bounds)]
    out = []
    for arr, (_, _, rows), g, rank in zip(arrays, parts, groupings, ranks, strict=True):
        codes = g.codes(rank)
        if rows is not None:
            full = np.full(len(arr), -1, dtype=np.int32)
            full[rows] = codes
            codes = full
        out.append(codes)
    return out, merged.index() if uniques else None


def _word(words: list[np.ndarray], j: int) -> np.ndarray:
    """Word ``j`` of a part, zeros past its own width."""
    if j < len(words):
        return words[j]
    return np.zeros(len(words[0]), dtype=np.uint64)


def _from_categorical(col: pd.Series, sort: bool) -> tuple[list[np.ndarray], pd.Index]:
    codes = col.cat.codes.to_numpy().astype(np.int32)
    cats = pd.Index(col.cat.categories.astype(STR))
    if sort and not cats.is_monotonic_increasing:
        order = np.argsort(cats.to_numpy(dtype=object), kind="stable")
        codes = np.where(codes >= 0, _rank(order)[np.maximum(codes, 0)], -1).astype(np.int32)
        cats = cats[order]
    return [codes], cats


def _rank(order: np.ndarray) -> np.ndarray:
    """The inverse permutation of ``order`` (new number of each old position), int32."""
    rank = np.empty(len(order), dtype=np.int32)
    rank[order] = np.arange(len(order), dtype=np.int32)
    return rank


def _as_string_array(col: Any) -> pa.Array:
    """One contiguous Arrow (large_)string array, without copying Arrow-backed columns."""
    if isinstance(col, pd.Series | pd.Index):
        arrow = getattr(col.array, "__arrow_array__", None)
        col = arrow() if arrow is not None else pa.array(col.to_numpy(object), from_pandas=True)
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        col = col.cast(pa.large_string())
    return col


def _words(arr: pa.Array) -> tuple[list[np.ndarray], np.ndarray, np.ndarray | None] | None:
    """Each non-null id as little-endian uint64 words (zero padded), its length in bytes,
    and the positions of the non-null rows (None when there is no null).

    None when some id is longer than the word path handles.
    """
    n = len(arr)
    rows = None if arr.null_count == 0 else np.flatnonzero(arr.is_valid().to_numpy(False))
    off_type = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    buffers = arr.buffers()
    offsets = np.frombuffer(buffers[1], dtype=off_type)[arr.offset : arr.offset + n + 1]
    starts = offsets[:-1] if rows is None else offsets[rows]
    lengths = np.diff(offsets) if rows is None else offsets[rows + 1] - starts
    m = len(lengths)
    longest = int(lengths.max()) if m else 0
    n_words = max(1, -(-longest // 8))
    if n_words > _MAX_WORDS:
        return None
    first = int(starts[0]) if m else 0
    grid = m > 0 and int(lengths.min()) == longest and int(starts[-1]) - first == (m - 1) * longest
    if grid and longest and longest % 8 == 0:  # already a grid of whole words: no copy
        flat = np.frombuffer(buffers[2], dtype=np.uint64, count=m * n_words, offset=first)
        table = flat.reshape(m, n_words)
    else:
        chars = np.zeros((m, n_words * 8), dtype=np.uint8)
        if longest:
            raw = np.frombuffer(buffers[2], dtype=np.uint8)
            if grid:
                chars[:, :longest] = raw[first : first + m * longest].reshape(m, longest)
            else:  # mixed widths: gather byte j of every id long enough to have one
                for j in range(longest):
                    has = lengths > j
                    chars[has, j] = raw[starts[has] + j]
        table = chars.view(np.uint64)
    words = [table[:, j] for j in range(n_words)]
    return words, lengths, rows


class _Grouping:
    """The distinct ids of one column (``words`` / ``lengths``) and each row's group.

    Runs of equal adjacent ids (the lines of one order, one session's events) are
    collapsed first when that leaves much less to hash; the comparison is exact.
    ``collision`` is set if two different ids hashed alike (the caller stays exact).
    """

    def __init__(self, words: list[np.ndarray], ln: np.ndarray, collapse: bool = True) -> None:
        self.run: np.ndarray | None = None
        self.collision = False
        lo, hi = (int(ln.min()), int(ln.max())) if len(ln) else (0, 0)
        self.fixed = lo == hi
        if collapse and len(ln) > _PARTITION_MIN_ROWS // 8:
            head = np.empty(len(ln), dtype=bool)
            head[0] = True
            np.not_equal(words[0][1:], words[0][:-1], out=head[1:])
            for w in words[1:]:
                head[1:] |= w[1:] != w[:-1]
            if not self.fixed:
                head[1:] |= ln[1:] != ln[:-1]
            if np.count_nonzero(head) < _RUN_SHARE * len(ln):
                self.run = np.cumsum(head, dtype=np.int32)
                self.run -= 1
                words, ln = [w[head] for w in words], ln[head]
        if len(words) == 1 and (self.fixed or hi < 8):
            # The id is its key (bytes, plus the length when widths differ): no check.
            tagged = words[0] if self.fixed else words[0] | (ln.astype(np.uint64) << np.uint64(56))
            self.groups = _Groups(tagged * _MUL)
            raw = self.groups.keys * _MUL_INV
            self.words = [raw if self.fixed else raw & _LOW56]
            self.lengths = (
                np.full(len(raw), lo, dtype=np.int64)
                if self.fixed
                else (raw >> np.uint64(56)).astype(np.int64)
            )
            return
        key = ln.astype(np.uint64) * _MIX
        for w in words:
            key = (key ^ w) * _MUL
            key ^= key >> np.uint64(29)
        self.groups = _Groups(key)
        rep = self.groups.first_rows()
        self.words = [w[rep] for w in words]
        self.lengths = ln[rep].astype(np.int64)
        codes = self.groups.codes(None)
        same = np.ones(len(codes), dtype=bool) if self.fixed else self.lengths[codes] == ln
        for u, w in zip(self.words, words, strict=True):
            same &= u[codes] == w
        self.collision = not bool(same.all())

    def rank(self, sort: bool) -> np.ndarray | None:
        """Sorted position of each distinct id (and sort ``words`` / ``lengths``); or None."""
        if not sort:
            return None
        # Big-endian words compare like the bytes; the length breaks ties of zero padding.
        big = [w.byteswap() for w in self.words]
        if len(big) == 1 and self.fixed:
            order = np.argsort(big[0])
        else:
            order = np.lexsort([*([] if self.fixed else [self.lengths]), *big[::-1]])
        self.words = [w[order] for w in self.words]
        self.lengths = self.lengths[order]
        return _rank(order)

    def codes(self, rank: np.ndarray | None) -> np.ndarray:
        """Group number of every row (numbered by ``rank`` when given), int32."""
        codes = self.groups.codes(rank)
        return codes if self.run is None else codes[self.run]

    def index(self) -> pd.Index:
        """The distinct ids, in group-number order, as a pandas string Index."""
        return _strings(self.words, self.lengths)


class _Groups:
    """Groups of equal, well-mixed uint64 keys, found by ``pd.factorize``.

    Large inputs are first split into 64 partitions by the keys' top bits (a radix sort
    of one byte), so that each partition's hash table stays in cache.
    """

    def __init__(self, key: np.ndarray) -> None:
        n = len(key)
        self.order: np.ndarray | None = None
        if n < _PARTITION_MIN_ROWS:
            codes, self.keys = pd.factorize(key)
            self.local = codes.astype(np.int32)
            return
        part = (key >> np.uint64(64 - _PARTITION_BITS)).astype(np.uint8)
        self.order = np.argsort(part, kind="stable")
        bounds = np.concatenate([[0], np.cumsum(np.bincount(part, minlength=1 << _PARTITION_BITS))])
        sorted_keys = key[self.order]
        slices = [(a, b) for a, b in itertools.pairwise(bounds) if a < b]
        # pandas hashes without the GIL: partitions are independent, so use the cores.
        with ThreadPoolExecutor(_threads()) as pool:
            found = list(pool.map(lambda ab: pd.factorize(sorted_keys[ab[0] : ab[1]]), slices))
        local = np.empty(n, dtype=np.int32)
        base = 0
        for (a, b), (c, u) in zip(slices, found, strict=True):
            np.add(c, base, out=local[a:b], casting="unsafe")
            base += len(u)
        self.local = local  # group numbers in partition order, numbered by first appearance
        self.keys = np.concatenate([u for _, u in found])

    def first_rows(self) -> np.ndarray:
        """One row per group (its first in partition order), as an original row index."""
        if len(self.local) == 0:
            return np.zeros(0, dtype=np.int64)
        high = np.maximum.accumulate(self.local)
        new = np.empty(len(high), dtype=bool)
        new[0] = True
        np.greater(high[1:], high[:-1], out=new[1:])
        pos = np.flatnonzero(new)
        return pos if self.order is None else self.order[pos]

    def codes(self, rank: np.ndarray | None) -> np.ndarray:
        """Group number of every row, in the original row order (renumbered by ``rank``)."""
        local = self.local if rank is None else rank[self.local]
        if self.order is None:
            return local
        out = np.empty(len(local), dtype=np.int32)
        out[self.order] = local
        return out


def _strings(words: list[np.ndarray], lengths: np.ndarray) -> pd.Index:
    """Rebuild ids from their words and lengths as a pandas string Index."""
    k = len(lengths)
    raw = np.ascontiguousarray(np.stack(words, axis=1)).view(np.uint8).reshape(k, 8 * len(words))
    lengths = lengths.astype(np.int64)
    data = raw[np.arange(raw.shape[1]) < lengths[:, None]]  # row-major: each id's bytes
    offsets = np.zeros(k + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    arr = pa.LargeStringArray.from_buffers(k, pa.py_buffer(offsets), pa.py_buffer(data))
    return pd.Index(pd.array(arr, dtype=STR))


def _generic(arrays: list[pa.Array], sort: bool) -> tuple[list[np.ndarray], pd.Index]:
    """Arrow's exact dictionary encoding: for very long ids (slow on many distinct ids)."""
    joined = pa.chunked_array([a.cast(pa.large_string()) for a in arrays]).combine_chunks()
    enc = joined.dictionary_encode()
    codes = enc.indices.to_numpy(zero_copy_only=False)
    codes = np.where(enc.indices.is_valid().to_numpy(zero_copy_only=False), codes, -1)
    codes = codes.astype(np.int32)
    index = pd.Index(pd.array(enc.dictionary, dtype=STR))
    if sort:
        order = np.argsort(index.to_numpy(dtype=object), kind="stable")
        codes = np.where(codes >= 0, _rank(order)[np.maximum(codes, 0)], -1).astype(np.int32)
        index = index[order]
    bounds = np.cumsum([0, *(len(a) for a in arrays)])
    return [codes[a:b] for a, b in itertools.pairwise(bounds)], index
