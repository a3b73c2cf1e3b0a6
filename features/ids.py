"""Fast, exact factorization of string id columns into integer codes.

Turning 10M customer ids into codes is the most expensive step of a feature build: a
hash table of 1M strings does not fit in cache, and ``pd.factorize`` (or Arrow's
``dictionary_encode``) spends most of its time waiting on memory. Here the id bytes
are read straight from the Arrow buffers, and then:

- ids of one width whose other characters are constant ("C0001234", "O000481624") are
  parsed to numbers by a compiled loop over the Arrow chunks (:mod:`features.digit_ids`);
- otherwise the bytes are read as 64-bit words; ids of one width whose *varying*
  characters are digits (a digit that never changes would spread the compiled path's
  numbers too thin) are parsed eight characters at a time (SWAR) and grouped through a
  presence table: no hashing, and integer order is string order;
- other ids of up to 8 bytes are their own 64-bit key (exact); longer ids are hashed to
  64 bits and every row is compared with its group's first row, so a collision can
  never merge two ids (it falls back to Arrow);
- keys are split into 64 cache-sized partitions by their top bits and the partitions
  are hashed on all cores (pandas hashes without the GIL).

With ``sort`` the codes follow the sorted order of the ids, so results never depend on
row order.
"""

from __future__ import annotations

import itertools
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from features import digit_ids

_MUL = np.uint64(0x9E3779B97F4A7C15)  # odd: multiplying by it is a bijection on uint64
_MUL_INV = np.uint64(pow(0x9E3779B97F4A7C15, -1, 1 << 64))
_MIX = np.uint64(0xFF51AFD7ED558CCD)
_LOW56 = np.uint64((1 << 56) - 1)
_PARTITION_BITS = 6
_PARTITION_MIN_ROWS = 1 << 18  # below this one hash table fits well enough in cache
_MAX_WORDS = 8  # ids longer than 64 bytes take Arrow's dictionary encoding
_COLLAPSE_MIN_ROWS = 1 << 18  # smaller inputs are hashed as they are
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
    n_rows = sum(len(a) for a in arrays)
    digits = digit_ids.factorize(arrays, uniques, _direct_range(n_rows))
    if digits is not None:  # "prefix + digits" ids, parsed in place by a compiled loop
        return digits
    parts = [_words(a) for a in arrays]
    if any(p is None for p in parts):
        return _generic(arrays, sort)
    decimal = _Decimal.parse([(words, ln) for words, ln, _ in parts])
    if decimal is not None:  # "prefix + digits" ids: no hashing at all
        return _place(arrays, parts, decimal.codes()), decimal.index() if uniques else None
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
    codes = [g.codes(rank) for g, rank in zip(groupings, ranks, strict=True)]
    return _place(arrays, parts, codes), merged.index() if uniques else None


def _place(arrays: list[pa.Array], parts: list, codes: list[np.ndarray]) -> list[np.ndarray]:
    """Codes of the non-null rows -> codes of every row (-1 for null)."""
    out = []
    for arr, (_, _, rows), c in zip(arrays, parts, codes, strict=True):
        if rows is not None:
            full = np.full(len(arr), -1, dtype=np.int32)
            full[rows] = c
            c = full
        out.append(c)
    return out


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


def _as_string_array(col: Any) -> pa.Array | pa.ChunkedArray:
    """Arrow (large_)string data, without copying Arrow-backed columns (chunks are kept:
    combining them would copy every id into Arrow's pool, which the builders' numpy
    arrays cannot reuse)."""
    if isinstance(col, pd.Series | pd.Index):
        arrow = getattr(col.array, "__arrow_array__", None)
        col = arrow() if arrow is not None else pa.array(col.to_numpy(object), from_pandas=True)
    if isinstance(col, pa.ChunkedArray) and col.num_chunks == 1:
        col = col.chunk(0)
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        col = col.cast(pa.large_string())
    return col


def _words(
    arr: pa.Array | pa.ChunkedArray,
) -> tuple[list[np.ndarray], np.ndarray, np.ndarray | None] | None:
    """Each non-null id as little-endian uint64 words (zero padded), its length in bytes,
    and the positions of the non-null rows (None when there is no null).

    None when some id is longer than the word path handles. The chunks of a chunked
    array are read one by one and their words joined.
    """
    if not isinstance(arr, pa.ChunkedArray):
        return _chunk_words(arr)
    parts = [_chunk_words(c) for c in arr.chunks]
    if any(p is None for p in parts):
        return None
    if not parts:
        return _chunk_words(pa.array([], type=arr.type))
    width = max(len(w) for w, _, _ in parts)
    words = [np.concatenate([_word(w, j) for w, _, _ in parts]) for j in range(width)]
    lengths = np.concatenate([ln for _, ln, _ in parts])
    if all(r is None for _, _, r in parts):
        return words, lengths, None
    starts = np.cumsum([0, *(len(c) for c in arr.chunks)])
    rows = np.concatenate(
        [
            (np.arange(len(ln)) if r is None else r) + a
            for (_, ln, r), a in zip(parts, starts, strict=False)
        ]
    )
    return words, lengths, rows


def _chunk_words(arr: pa.Array) -> tuple[list[np.ndarray], np.ndarray, np.ndarray | None] | None:
    """:func:`_words` of one contiguous array."""
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
        if collapse and len(ln) > _COLLAPSE_MIN_ROWS:
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


_ASCII_0 = np.uint64(0x3030303030303030)
_HIGH = np.uint64(0x8080808080808080)
_LOW7 = np.uint64(0x7F7F7F7F7F7F7F7F)
_NINE = np.uint64(0x3939393939393939)
_DIRECT_MAX = 1 << 28  # largest value range grouped through a direct-address table


def _direct_range(n_rows: int) -> int:
    """Widest range of numbers grouped through a presence table for ``n_rows`` ids:
    8 slots a row (at least 1M), at most ``_DIRECT_MAX``."""
    return min(_DIRECT_MAX, max(8 * n_rows, 1 << 20))


class _Decimal:
    """Fixed-width ids whose varying characters are all digits ("C0001234", "0042").

    Characters that are the same in every id carry no information; the others are
    decimal digits, so each id maps exactly to an integer, and integer order is the
    ids' string order (same width, same constant characters). Grouping integers in a
    small range needs no hashing: a presence table and a cumulative sum.
    """

    def __init__(self, values, width, varying, reference) -> None:
        self.values = values  # per column: int64 value of every non-null id
        self.width = width
        self.varying = varying  # per word: byte mask of the positions that vary
        self.reference = reference  # per word: the first id's word (constant bytes)

    @staticmethod
    def kept(masks: list[int]) -> list[int]:
        """Digits each word contributes to the value: 8, but none for the last word's
        trailing constant characters (its zero padding, say), which would only multiply
        every value by a power of ten and spread them too thin for a direct table.
        """
        last = masks[-1]
        trailing = next((i for i in range(8) if (last >> (8 * (7 - i))) & 0xFF), 8)
        return [8] * (len(masks) - 1) + [8 - trailing]

    @classmethod
    def parse(cls, parts: list[tuple[list[np.ndarray], np.ndarray]]) -> _Decimal | None:
        lengths = [ln for _, ln in parts if len(ln)]
        if not lengths or max(len(w) for w, _ in parts) > 2:
            return None
        width = int(lengths[0][0])
        if width == 0 or any(int(ln.min()) != width or int(ln.max()) != width for ln in lengths):
            return None
        n_words = -(-width // 8)
        first = next(words for words, ln in parts if len(ln))
        reference = [first[j][0] for j in range(n_words)]
        varying = [np.uint64(0)] * n_words
        digits = [~np.uint64(0)] * n_words
        scratch = _Scratch()
        for words, ln in parts:
            for a, b in _chunks(len(ln)):
                for j in range(n_words):
                    x = words[j][a:b]
                    diff = np.bitwise_xor(x, reference[j], out=scratch.get(0, b - a))
                    varying[j] |= np.bitwise_or.reduce(diff)
                    # bit 7 of each byte: set where the byte is an ASCII digit
                    ge = np.bitwise_or(x, _HIGH, out=scratch.get(0, b - a))
                    ge -= _ASCII_0
                    le = np.bitwise_and(x, _LOW7, out=scratch.get(1, b - a))
                    np.subtract(_NINE | _HIGH, le, out=le)
                    ge &= le
                    np.bitwise_not(x, out=le)
                    ge &= le
                    digits[j] &= np.bitwise_and.reduce(ge) & _HIGH
        masks = []
        for j in range(n_words):
            var_bytes = _byte_mask(varying[j])
            if var_bytes & ~_byte_mask(digits[j]):
                return None  # some varying character is not always a digit
            masks.append(var_bytes)
        kept = cls.kept(masks)
        values = []
        for words, ln in parts:
            v = np.zeros(len(ln), dtype=np.uint64)
            for a, b in _chunks(len(ln)):
                out = v[a:b]
                for j in range(n_words):
                    if not kept[j]:
                        continue
                    mask = np.uint64(masks[j])
                    word = np.bitwise_and(words[j][a:b], mask, out=scratch.get(0, b - a))
                    word |= _ASCII_0 & ~mask
                    if kept[j] < 8:  # drop the trailing characters: shift in leading "0"s
                        drop = 8 * (8 - kept[j])
                        word <<= np.uint64(drop)
                        word |= _ASCII_0 & np.uint64((1 << drop) - 1)
                    if j:
                        out *= np.uint64(10 ** kept[j])
                    out += _eight_digits(word, scratch.get(1, b - a))
            values.append(v.view(np.int64))
        return cls(values, width, masks, reference)

    def codes(self) -> list[np.ndarray]:
        """Codes numbered in value order (= string order), per column."""
        lo = min((int(v.min()) for v in self.values if len(v)), default=0)
        hi = max((int(v.max()) for v in self.values if len(v)), default=0)
        n = sum(len(v) for v in self.values)
        if hi - lo < _direct_range(n):
            for v in self.values:
                v -= lo  # our own array: shift in place
            present = np.zeros(hi - lo + 1, dtype=bool)
            for v in self.values:
                present[v] = True
            rank = np.cumsum(present, dtype=np.int32)
            rank -= 1
            self.distinct = np.flatnonzero(present) + lo
            return [np.take(rank, v) for v in self.values]
        groups = _Groups(np.concatenate(self.values).astype(np.uint64) * _MUL)
        distinct = (groups.keys * _MUL_INV).astype(np.int64)
        order = np.argsort(distinct)
        self.distinct = distinct[order]
        codes = groups.codes(_rank(order))
        bounds = np.cumsum([0, *(len(v) for v in self.values)])
        return [codes[a:b] for a, b in itertools.pairwise(bounds)]

    def index(self) -> pd.Index:
        """The distinct ids (call after :meth:`codes`)."""
        kept = self.kept(self.varying)
        words = []
        rest = self.distinct.astype(np.uint64)
        for j, mask in enumerate(self.varying):
            scale = np.uint64(10 ** sum(kept[j + 1 :]))
            part, rest = rest // scale, rest % scale
            if kept[j]:
                word = _digits_word(part) >> np.uint64(8 * (8 - kept[j]))
            else:
                word = np.zeros(len(part), dtype=np.uint64)
            mask = np.uint64(mask)
            words.append((word & mask) | (self.reference[j] & ~mask))
        return _strings(words, np.full(len(self.distinct), self.width, dtype=np.int64))


def _byte_mask(bits: np.uint64) -> int:
    """0xFF in every byte of a word where ``bits`` has any bit set."""
    b = int(bits)
    return sum(0xFF << (8 * i) for i in range(8) if (b >> (8 * i)) & 0xFF)


def _eight_digits(word: np.ndarray, tmp: np.ndarray) -> np.ndarray:
    """Value of 8 ASCII digits packed little-endian (first character most significant).

    Works in place on ``word`` (``tmp`` is scratch of the same size): three multiply-
    and-shift steps combine 1, 2, then 4 digits at a time (SWAR).
    """
    word -= _ASCII_0
    np.right_shift(word, np.uint64(8), out=tmp)
    word *= np.uint64(10)
    word += tmp
    word &= np.uint64(0x00FF00FF00FF00FF)
    word *= np.uint64(6553601)
    word >>= np.uint64(16)
    word &= np.uint64(0x0000FFFF0000FFFF)
    word *= np.uint64(42949672960001)
    word >>= np.uint64(32)
    return word


_CHUNK = 1 << 19


def _chunks(n: int) -> list[tuple[int, int]]:
    """Row ranges of at most ``_CHUNK``: element-wise work stays in cache."""
    return [(a, min(a + _CHUNK, n)) for a in range(0, n, _CHUNK)]


class _Scratch:
    """Reused uint64 buffers for chunked element-wise work (no fresh memory per step)."""

    def __init__(self) -> None:
        self._buffers: dict[int, np.ndarray] = {}

    def get(self, slot: int, n: int) -> np.ndarray:
        buf = self._buffers.get(slot)
        if buf is None or len(buf) < n:
            buf = self._buffers[slot] = np.empty(max(n, _CHUNK), dtype=np.uint64)
        return buf[:n]


def _digits_word(value: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_eight_digits`: values below 10**8 as 8 ASCII digits."""
    word = np.zeros(len(value), dtype=np.uint64)
    for i in range(8):
        digit = (value // np.uint64(10 ** (7 - i))) % np.uint64(10)
        word |= (digit + np.uint64(0x30)) << np.uint64(8 * i)
    return word


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
        local = self.local if rank is None else np.take(rank, self.local)
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


def _generic(
    arrays: list[pa.Array | pa.ChunkedArray], sort: bool
) -> tuple[list[np.ndarray], pd.Index]:
    """Arrow's exact dictionary encoding: for very long ids (slow on many distinct ids)."""
    chunks = [c for a in arrays for c in (a.chunks if isinstance(a, pa.ChunkedArray) else [a])]
    joined = pa.chunked_array([c.cast(pa.large_string()) for c in chunks], pa.large_string())
    joined = joined.combine_chunks()
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
