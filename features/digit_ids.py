"""Fixed-width "prefix + digits" ids, straight from Arrow buffers to integer codes.

Customer, order and store numbers usually look like ``C0832840``: one width, the same
letters in the same places, digits elsewhere. Such an id *is* a number (its digits in
order), and number order is string order. A compiled loop (:mod:`features.native`)
reads every id's bytes in place from the Arrow chunks, checks it against the first
id's pattern and writes its number: one pass, no copy of the strings, no hashing.
Codes then come from a presence table over the numbers' range (numbered in order)
and one more pass. Columns of other shapes return None and take the general path in
:mod:`features.ids`. On 10M customer ids in one process (warm) it took 0.19-0.25 s
where the numpy word path took 0.24-0.38 s, and it leaves only the numbers and the
codes to fault in.
"""

from __future__ import annotations

import ctypes

import numpy as np
import pandas as pd
import pyarrow as pa

from features.memory import random_access
from features.native import Loops, compiled

MAX_DIGITS = 18  # characters up to the last digit: the number must fit in int64
_DIGIT = 0xFF  # pattern byte of a digit position (never a byte of UTF-8 text)
_P, _I = ctypes.c_void_p, ctypes.c_int64
# (data, offsets, validity, bit offset, n, plan, words, width, out values, out [min, max])
_PARSE = ctypes.CFUNCTYPE(_I, _P, _P, _P, _I, _I, _P, _I, _I, _P, _P)
_PLAN = 5  # per word: constant mask, constant bytes, digit mask, chars kept, 10 ** kept
_ASCII_0, _HIGH = 0x3030303030303030, 0x8080808080808080
_LOW7, _NINE = 0x7F7F7F7F7F7F7F7F, 0x3939393939393939
_MARK = ctypes.CFUNCTYPE(None, _P, _P, _I, _I)  # (present, values, n, lo)
_CODES = ctypes.CFUNCTYPE(None, _P, _P, _P, _I, _I)  # (codes, values, rank, n, lo)


def factorize(
    arrays: list[pa.Array | pa.ChunkedArray], uniques: bool, max_range: int
) -> tuple[list[np.ndarray], pd.Index | None] | None:
    """int32 codes in id order (-1 for null) per column and the distinct ids, or None
    when some id does not fit the first one's pattern or the numbers span more than
    ``max_range`` (the presence table would be too large)."""
    chunks = [list(a.chunks) if isinstance(a, pa.ChunkedArray) else [a] for a in arrays]
    pattern = _Pattern.of_first(c for column in chunks for c in column)
    if pattern is None:
        return None
    values, lo, hi = [], None, None
    for column in chunks:
        parsed = _parse(column, pattern)
        if parsed is None:
            return None
        v, bounds = parsed
        values.append(v)
        if bounds is not None:
            lo = bounds[0] if lo is None else min(lo, bounds[0])
            hi = bounds[1] if hi is None else max(hi, bounds[1])
    if lo is None or hi - lo >= max_range:  # (lo is set: the pattern came from an id)
        return None
    present = random_access(hi - lo + 1, np.uint8, 0)
    bits = values[0].itemsize * 8
    mark = _function(f"mark_v{bits}", _MARK)
    for v in values:
        mark(present.ctypes.data, v.ctypes.data, len(v), lo)
    rank = np.cumsum(present, dtype=np.int32)
    rank -= 1
    to_codes = _function(f"codes_v{bits}", _CODES)
    codes = []
    for v in values:
        c = np.empty(len(v), dtype=np.int32)
        to_codes(c.ctypes.data, v.ctypes.data, rank.ctypes.data, len(v), lo)
        codes.append(c)
    index = pattern.strings(np.flatnonzero(present) + lo) if uniques else None
    return codes, index


class _Pattern:
    """The shape every id must have: the first id's bytes, digits marked ``_DIGIT``.

    An id's number is its first ``length`` characters read as decimal digits, the
    constant ones (a letter prefix, a dash) as 0, so numbers order like the ids; the
    constant characters after the last digit are checked but not counted. ``plan``
    is what the compiled loop needs per 8-byte word of the id.
    """

    def __init__(self, raw: np.ndarray) -> None:
        self.raw = raw
        self.width = len(raw)
        self.length = int(np.flatnonzero(raw == _DIGIT)[-1]) + 1
        n_words = -(-self.width // 8)
        padded = np.zeros(8 * n_words, dtype=np.uint8)
        padded[: self.width] = raw
        plan = np.zeros((n_words, _PLAN), dtype=np.uint64)
        for j in range(n_words):
            chunk = padded[8 * j : 8 * j + 8]
            inside = np.arange(8 * j, 8 * j + 8) < self.width
            digit = chunk == _DIGIT
            constant = inside & ~digit
            plan[j, 0] = np.where(constant, 0xFF, 0).astype(np.uint8).view(np.uint64)[0]
            plan[j, 1] = np.where(constant, chunk, 0).astype(np.uint8).view(np.uint64)[0]
            plan[j, 2] = np.where(digit, 0xFF, 0).astype(np.uint8).view(np.uint64)[0]
            keep = min(8, max(0, self.length - 8 * j))
            plan[j, 3] = keep or 8  # a word with no digit adds 0 and does not scale
            plan[j, 4] = 10**keep
        self.plan = plan.view(np.int64)
        # leading constants count as 0: numbers of up to 9 places fit int32, half the
        # memory to write and read back
        places = self.length - int(np.flatnonzero(raw == _DIGIT)[0])
        self.values = np.dtype(np.int32 if places <= 9 else np.int64)

    @classmethod
    def of_first(cls, chunks) -> _Pattern | None:
        """The pattern of the first non-null id; None when it has no digit, too long a
        number, or the column is not text."""
        for chunk in chunks:
            if len(chunk) == chunk.null_count:
                continue
            if not (pa.types.is_string(chunk.type) or pa.types.is_large_string(chunk.type)):
                return None
            first = 0 if chunk.null_count == 0 else int(np.argmax(chunk.is_valid().to_numpy(False)))
            raw = np.frombuffer(chunk[first].as_py().encode(), dtype=np.uint8).copy()
            digit = (raw >= ord("0")) & (raw <= ord("9"))
            if not digit.any() or int(np.flatnonzero(digit)[-1]) + 1 > MAX_DIGITS:
                return None
            raw[digit] = _DIGIT
            return cls(raw)
        return None

    def strings(self, numbers: np.ndarray) -> pd.Index:
        """The ids of ``numbers`` (ascending) as a pandas string Index."""
        from features.ids import STR

        k = len(numbers)
        raw = np.empty((k, self.width), dtype=np.uint8)
        rest = np.array(numbers, dtype=np.int64)
        for p in range(self.width - 1, -1, -1):
            if p < self.length:
                digit = rest % 10
                rest //= 10
            raw[:, p] = digit + ord("0") if self.raw[p] == _DIGIT else self.raw[p]
        offsets = np.arange(k + 1, dtype=np.int64) * self.width
        data = pa.py_buffer(raw.ravel())
        arr = pa.LargeStringArray.from_buffers(k, pa.py_buffer(offsets), data)
        return pd.Index(pd.array(arr, dtype=STR))


def _parse(chunks: list[pa.Array], pattern: _Pattern) -> tuple[np.ndarray, tuple] | None:
    """Every id's number (-1 for null) and the (min, max) of the numbers (None: all
    null); None as soon as one id does not fit ``pattern``."""
    n = sum(len(c) for c in chunks)
    values = np.empty(n, dtype=pattern.values)
    bounds = np.array([np.iinfo(np.int64).max, -1], dtype=np.int64)
    reach = 8 * len(pattern.plan)  # bytes read from an id's start
    at = 0
    for chunk in chunks:
        m = len(chunk)
        if m == chunk.null_count:
            values[at : at + m] = -1
            at += m
            continue
        validity, offsets, data = chunk.buffers()[:3]
        if data is None:  # only empty strings
            return None
        size = 8 if pa.types.is_large_string(chunk.type) else 4
        off = np.frombuffer(offsets, dtype=np.int64 if size == 8 else np.int32)
        off = off[chunk.offset : chunk.offset + m + 1]
        bits = validity.address if validity is not None and chunk.null_count else None
        # Rows whose words would run past the data buffer are read from a padded copy.
        safe = int(np.searchsorted(off[:m], data.size - reach, side="right"))
        parts = [(data.address, off.ctypes.data, 0, safe)]
        if safe < m:
            tail = np.zeros(int(off[m] - off[safe]) + reach, dtype=np.uint8)
            tail[: int(off[m] - off[safe])] = np.frombuffer(data, np.uint8)[off[safe] : off[m]]
            tail_off = (off[safe:] - off[safe]).astype(off.dtype)
            parts.append((tail.ctypes.data, tail_off.ctypes.data, safe, m - safe))
        fn = _function(f"parse_o{size * 8}_v{pattern.values.itemsize * 8}", _PARSE)
        for base, offs, first, rows in parts:
            if rows and fn(
                base,
                offs,
                bits,
                chunk.offset + first,
                rows,
                pattern.plan.ctypes.data,
                len(pattern.plan),
                pattern.width,
                values.ctypes.data + (at + first) * values.itemsize,
                bounds.ctypes.data,
            ):
                return None
        at += m
    return values, (None if bounds[1] < 0 else (int(bounds[0]), int(bounds[1])))


def _function(name: str, signature):
    return compiled(f"digit-ids-{name}", lambda: _module(name), name, signature)


def _module(function: str):
    """An LLVM module with one of the loops, in C terms::

    // parse_o64_v32: int64 offsets, int32 numbers; 0 when every id fits, else row + 1
    int64 parse_o64_v32(uint8 *data, int64 *offsets, uint8 *validity, int64 bit0,
                        int64 n, int64 *plan, int64 n_words, int64 width,
                        int32 *out, int64 *minmax) {
        for (i = 0; i < n; i++) {
            if (validity && !bit(validity, bit0 + i)) { out[i] = -1; continue; }
            start = offsets[i];
            if (offsets[i + 1] - start != width) return i + 1;
            v = 0; wrong = 0;
            for (j = 0; j < n_words; j++) {  // 8 characters at a time
                x = *(uint64 *) (data + start + 8 * j);
                wrong |= constant characters differ from plan | a digit place is not one;
                v = v * 10**kept[j] + eight_digits(digits of x, constants as '0');
            }
            if (wrong) return i + 1;
            out[i] = v; minmax[0] = min(minmax[0], v); minmax[1] = max(minmax[1], v);
        }
        return 0;
    }
    void mark_v32(uint8 *present, int32 *values, int64 n, int64 lo)  // v >= 0 only
    void codes_v32(int32 *codes, int32 *values, int32 *rank, int64 n, int64 lo)
    """
    from llvmlite import ir

    i1, i8, i32, i64 = ir.IntType(1), ir.IntType(8), ir.IntType(32), ir.IntType(64)
    zero, one = ir.Constant(i64, 0), ir.Constant(i64, 1)
    module = ir.Module(function)
    what, *widths = function.split("_")
    value_t = ir.IntType(int(widths[-1][1:]))
    if what == "mark":
        params = [i8.as_pointer(), value_t.as_pointer(), i64, i64]
        fn = ir.Function(module, ir.FunctionType(ir.VoidType(), params), function)
        present, values, n, lo = fn.args
        loops = Loops(fn)
        b = loops.b

        def mark(i):
            v = b.sext(b.load(b.gep(values, [i])), i64)
            with b.if_then(b.icmp_signed(">=", v, zero), likely=True):
                b.store(ir.Constant(i8, 1), b.gep(present, [b.sub(v, lo)]))

        loops.loop(zero, n, one, mark)
        loops.finish()
        return module
    if what == "codes":
        params = [i32.as_pointer(), value_t.as_pointer(), i32.as_pointer(), i64, i64]
        fn = ir.Function(module, ir.FunctionType(ir.VoidType(), params), function)
        codes, values, rank, n, lo = fn.args
        loops = Loops(fn)
        b = loops.b

        def code(i):
            v = b.sext(b.load(b.gep(values, [i])), i64)
            known = b.icmp_signed(">=", v, zero)
            looked = b.load(b.gep(rank, [b.select(known, b.sub(v, lo), zero)]))
            b.store(b.select(known, looked, ir.Constant(i32, -1)), b.gep(codes, [i]))

        loops.loop(zero, n, one, code)
        loops.finish()
        return module

    off_t = ir.IntType(int(widths[0][1:]))
    params = [
        i8.as_pointer(),
        off_t.as_pointer(),
        i8.as_pointer(),
        i64,
        i64,
        i64.as_pointer(),
        i64,
        i64,
        value_t.as_pointer(),
        i64.as_pointer(),
    ]
    fn = ir.Function(module, ir.FunctionType(i64, params), function)
    data, offsets, validity, bit0, n, plan, n_words, width, out, minmax = fn.args
    loops = Loops(fn)
    b = loops.b
    has_validity = b.icmp_unsigned("!=", validity, ir.Constant(i8.as_pointer(), None))
    lo_var = loops.var(i64, ir.Constant(i64, np.iinfo(np.int64).max))
    hi_var = loops.var(i64, ir.Constant(i64, -1))
    value = loops.var(i64)
    wrong = loops.var(i64)
    null = loops.var(i1)

    def const(x: int):
        return ir.Constant(i64, x)

    def fail(i) -> None:
        failed, fine = fn.append_basic_block("fail"), fn.append_basic_block("fine")
        b.cbranch(b.icmp_unsigned("!=", b.load(wrong), zero), failed, fine)
        b.position_at_end(failed)
        b.ret(b.add(i, one))
        b.position_at_end(fine)

    def word_of(start, j) -> None:
        """Check word ``j`` of the id at ``start`` and add its digits to ``value``."""
        at = b.gep(data, [b.add(start, b.mul(j, const(8)))])
        x = b.load(b.bitcast(at, i64.as_pointer()), align=1)
        step = b.mul(j, const(_PLAN))
        const_mask, const_val, digit_mask, keep, scale = (
            b.load(b.gep(plan, [b.add(step, const(k))])) for k in range(_PLAN)
        )
        bad = b.and_(b.xor(x, const_val), const_mask)
        ge = b.sub(b.or_(x, const(_HIGH)), const(_ASCII_0))
        le = b.sub(const(_NINE | _HIGH), b.and_(x, const(_LOW7)))
        is_digit = b.and_(b.and_(ge, le), b.not_(x))
        high = b.and_(digit_mask, const(_HIGH))
        bad = b.or_(bad, b.xor(b.and_(is_digit, high), high))
        b.store(b.or_(b.load(wrong), bad), wrong)
        digits = b.or_(b.and_(x, digit_mask), b.and_(const(_ASCII_0), b.not_(digit_mask)))
        drop = b.mul(b.sub(const(8), keep), const(8))  # leading "0"s in for dropped chars
        low = b.sub(b.shl(one, drop), one)
        digits = b.or_(b.shl(digits, drop), b.and_(const(_ASCII_0), low))
        w = b.sub(digits, const(_ASCII_0))
        w = b.and_(b.add(b.mul(w, const(10)), b.lshr(w, const(8))), const(0x00FF00FF00FF00FF))
        w = b.and_(b.lshr(b.mul(w, const(6553601)), const(16)), const(0x0000FFFF0000FFFF))
        w = b.lshr(b.mul(w, const(42949672960001)), const(32))
        b.store(b.add(b.mul(b.load(value), scale), w), value)

    def row(i) -> None:
        b.store(ir.Constant(i1, 0), null)
        with b.if_then(has_validity):
            bit = b.add(bit0, i)
            byte = b.load(b.gep(validity, [b.lshr(bit, const(3))]))
            set_ = b.trunc(b.lshr(byte, b.trunc(b.and_(bit, const(7)), i8)), i1)
            b.store(b.not_(set_), null)
        with b.if_else(b.load(null), likely=False) as (is_null, is_id):
            with is_null:
                b.store(ir.Constant(value_t, -1), b.gep(out, [i]))
            with is_id:
                start = b.sext(b.load(b.gep(offsets, [i])), i64)
                stop = b.sext(b.load(b.gep(offsets, [b.add(i, one)])), i64)
                b.store(b.zext(b.icmp_signed("!=", b.sub(stop, start), width), i64), wrong)
                fail(i)
                b.store(zero, value)
                loops.loop(zero, n_words, one, lambda j: word_of(start, j))
                fail(i)
                v = b.load(value)
                b.store(b.trunc(v, value_t) if value_t.width < 64 else v, b.gep(out, [i]))
                lo, hi = b.load(lo_var), b.load(hi_var)
                b.store(b.select(b.icmp_signed("<", v, lo), v, lo), lo_var)
                b.store(b.select(b.icmp_signed(">", v, hi), v, hi), hi_var)

    loops.loop(zero, n, one, row)
    for at, found, smaller in ((zero, lo_var, "<"), (one, hi_var, ">")):
        bound, mine = b.gep(minmax, [at]), b.load(found)
        b.store(b.select(b.icmp_signed(smaller, mine, b.load(bound)), mine, b.load(bound)), bound)
    loops.finish(zero)
    return module
