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
    width = max(len(p[0]) for p in parts)
    words = [_concat([_word(p[0], j) for p in parts]) for j in range(width)]
    lengths = _concat([p[1] for p in parts])
    found = _factorize_words(words, lengths, sort, uniques)
    if found is None:  # a 64-bit hash collision between two different ids: stay exact
        return _generic(arrays, sort)
    codes, index = found
    out = []
    start = 0
    for arr, (_, ln, rows) in zip(arrays, parts, strict=True):
        part = codes[start : start + len(ln)]
        start += len(ln)
        if rows is None:
            out.append(part)
        else:
            full = np.full(len(arr), -1, dtype=np.int32)
            full[rows] = part
            out.append(full)
    return out, index


def _concat(arrays: list[np.ndarray]) -> np.ndarray:
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)


def _word(words: list[np.ndarray], j: int) -> np.ndarray:
    """Word ``j`` of a part, zeros past its own width."""
    if j < len(words):
        return words[j]
    return np.zeros(len(words[0]) if words else 0, dtype=np.uint64)


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


def _factorize_words(
    words: list[np.ndarray], ln: np.ndarray, sort: bool, uniques: bool, collapse: bool = True
) -> tuple[np.ndarray, pd.Index | None] | None:
    """Factorize ids given as word columns and lengths; None if a hash collision was found.

    Runs of equal adjacent ids (the lines of one order, one session's events) are
    collapsed first when that leaves much less to hash; the comparison is exact.
    """
    lo, hi = (int(ln.min()), int(ln.max())) if len(ln) else (0, 0)
    fixed = lo == hi
    if collapse and len(ln) > _PARTITION_MIN_ROWS // 8:
        head = np.empty(len(ln), dtype=bool)
        head[0] = True
        np.not_equal(words[0][1:], words[0][:-1], out=head[1:])
        for w in words[1:]:
            head[1:] |= w[1:] != w[:-1]
        if not fixed:
            head[1:] |= ln[1:] != ln[:-1]
        if np.count_nonzero(head) < _RUN_SHARE * len(ln):
            found = _factorize_words([w[head] for w in words], ln[head], sort, uniques, False)
            if found is None:
                return None
            run = np.cumsum(head, dtype=np.int32)
            run -= 1
            return found[0][run], found[1]
    exact = len(words) == 1 and (fixed or hi < 8)
    if exact:  # the id is its key (bytes, plus the length when widths differ): no check
        tagged = words[0] if fixed else words[0] | (ln.astype(np.uint64) << np.uint64(56))
        groups = _Groups(tagged * _MUL)
        raw = groups.keys * _MUL_INV
        uw = [raw if fixed else raw & _LOW56]
        ul = np.full(len(raw), lo, dtype=np.int64) if fixed else (raw >> np.uint64(56))
    else:
        key = ln.astype(np.uint64) * _MIX
        for w in words:
            key = (key ^ w) * _MUL
            key ^= key >> np.uint64(29)
        groups = _Groups(key)
        rep = groups.first_rows()
        uw = [w[rep] for w in words]
        ul = ln[rep]
    rank = None
    if sort:
        # Big-endian words compare like the bytes; the length breaks ties of zero padding.
        big = [w.byteswap() for w in uw]
        if len(big) == 1 and fixed:
            order = np.argsort(big[0])
        else:
            order = np.lexsort([*([] if fixed else [ul]), *big[::-1]])
        rank = _rank(order)
        uw, ul = [w[order] for w in uw], ul[order]
    codes = groups.codes(rank)
    if not exact:
        same = np.ones(len(codes), dtype=bool) if fixed else ul[codes] == ln
        for u, w in zip(uw, words, strict=True):
            same &= u[codes] == w
        if not bool(same.all()):
            return None
    return codes, _strings(uw, ul) if uniques else None


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
        local = np.empty(n, dtype=np.int32)
        uniques = []
        base = 0
        for a, b in itertools.pairwise(bounds):
            if a == b:
                continue
            c, u = pd.factorize(sorted_keys[a:b])
            np.add(c, base, out=local[a:b], casting="unsafe")
            base += len(u)
            uniques.append(u)
        self.local = local  # group numbers in partition order, numbered by first appearance
        self.keys = np.concatenate(uniques)

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
