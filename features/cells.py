"""Grouped counts and minima per (cell, window band, customer) in one compiled pass.

A builder sorts each event into a cell by its (channel, event type) and into a window
band by its age in days, then counts events (or keeps the smallest age) per cell, band
and customer. In numpy that is five passes over the log and four temporary arrays as
long as it (cell lookup, band, key, widened key) before the scatter itself; here it is
one pass over the events, compiled at first use (:mod:`features.native`), that reads
the per-event columns once and writes only the result. In C terms::

    for (i = 0; i < n; i++) {
        cell = cell_of[channel[i] * n_types + event_type[i]];
        key = (cell * n_bands + band_of[day[i]]) * width + code[i];
        out[key] += 1;                      // count
        out[key] = min(out[key], value[i])  // minimum
    }

Keys are worked out for 2,048 events at a time into a buffer in cache, then scattered:
the writes land at random customers, and with the key arithmetic between them the CPU
kept too few of them in flight (that single loop took twice as long as numpy's steps).
The result is group-major like :func:`features.kernels.accumulate`'s: row
``cell * n_bands + band`` holds one slot per customer. An event whose lookups or
customer are out of range is counted, not written, and raises ``IndexError`` after
the pass."""

from __future__ import annotations

import ctypes

import numpy as np

from features.memory import random_access
from features.native import Loops, compiled

_P, _I = ctypes.c_void_p, ctypes.c_int64
# (out, code, channel, event_type, day, value, cell_of, n_cell_of, band_of, n_days,
#  n_types, n_bands, width, n, n_out) -> lookups or keys out of range
_SIGNATURE = ctypes.CFUNCTYPE(_I, _P, _P, _P, _P, _P, _P, _P, _I, _P, _I, _I, _I, _I, _I, _I)
_BLOCK = 2048  # keys worked out a block at a time, in cache, then scattered
_INTS = {np.dtype(t): np.dtype(t).itemsize * 8 for t in (np.int8, np.int16, np.int32, np.int64)}


def count(
    code: np.ndarray,
    channel: np.ndarray,
    event_type: np.ndarray,
    day: np.ndarray,
    cell_of: np.ndarray,
    band_of: np.ndarray,
    n_types: int,
    width: int,
) -> np.ndarray:
    """int32 events per (cell, band, customer), shape ``(n_cells * n_bands, width)``.

    ``cell_of`` (int16) maps ``channel * n_types + event_type`` to a cell, ``band_of``
    (int8) a day to its band; ``code`` is the customer slot ``0 .. width - 1``.
    """
    return _run("count", code, channel, event_type, day, None, cell_of, band_of, n_types, width)


def minimum(
    code: np.ndarray,
    channel: np.ndarray,
    event_type: np.ndarray,
    day: np.ndarray,
    value: np.ndarray,
    cell_of: np.ndarray,
    band_of: np.ndarray,
    n_types: int,
    width: int,
    fill: int,
) -> np.ndarray:
    """The smallest int32 ``value`` per (cell, band, customer), ``fill`` where none."""
    return _run(
        "min", code, channel, event_type, day, value, cell_of, band_of, n_types, width, fill
    )


def _run(what, code, channel, event_type, day, value, cell_of, band_of, n_types, width, fill=0):
    n = len(code)
    cols = {"code": code, "channel": channel, "event_type": event_type, "day": day}
    if value is not None:
        cols["value"] = value
    for name, col in cols.items():
        if col.ndim != 1 or len(col) != n or not col.flags.c_contiguous or col.dtype not in _INTS:
            raise TypeError(f"{name}: need a contiguous 1-d integer array of {n} rows")
    if value is not None and value.dtype != np.int32:
        raise TypeError(f"value: need int32, not {value.dtype}")
    cell_of = np.ascontiguousarray(cell_of, dtype=np.int16)
    band_of = np.ascontiguousarray(band_of, dtype=np.int8)
    if not len(cell_of) or not len(band_of) or min(cell_of.min(), band_of.min()) < 0:
        raise ValueError("cell_of and band_of need at least one entry, all >= 0")
    n_cells, n_bands = int(cell_of.max()) + 1, int(band_of.max()) + 1
    shape = (n_cells * n_bands, width)
    out = random_access(shape, np.int32, 0 if value is None else fill)
    name = f"{what}_" + "_".join(str(_INTS[c.dtype]) for c in (code, channel, event_type, day))
    fn = compiled(f"cells-{name}", lambda: _module(name), name, _SIGNATURE)
    bad = fn(
        out.ctypes.data,
        code.ctypes.data,
        channel.ctypes.data,
        event_type.ctypes.data,
        day.ctypes.data,
        value.ctypes.data if value is not None else None,
        cell_of.ctypes.data,
        len(cell_of),
        band_of.ctypes.data,
        len(band_of),
        n_types,
        n_bands,
        width,
        n,
        out.size,
    )
    if bad:
        raise IndexError(f"{bad} events with a channel, type, day or customer out of range")
    return out


def _module(function: str):
    """An LLVM module with the one loop ``function``: ``count_64_8_8_32`` counts with
    int64 codes, int8 channels and types and int32 days; ``min_...`` keeps minima."""
    from llvmlite import ir

    what, *bits = function.split("_")
    i8, i16, i32, i64 = (ir.IntType(b) for b in (8, 16, 32, 64))
    code_t, ch_t, et_t, day_t = (ir.IntType(int(b)) for b in bits)
    module = ir.Module(function)
    params = [
        i32.as_pointer(),
        code_t.as_pointer(),
        ch_t.as_pointer(),
        et_t.as_pointer(),
        day_t.as_pointer(),
        i32.as_pointer(),
        i16.as_pointer(),
        i64,
        i8.as_pointer(),
        i64,
        i64,
        i64,
        i64,
        i64,
        i64,
    ]
    fn = ir.Function(module, ir.FunctionType(i64, params), function)
    for arg in fn.args[:7]:
        arg.add_attribute("noalias")
    out, code_p, ch_p, et_p, day_p, value_p, cell_of, n_cell_of = fn.args[:8]
    band_of, n_days, n_types, n_bands, width, n, n_out = fn.args[8:]
    loops = Loops(fn)
    b = loops.b
    bad = loops.var(i64, ir.Constant(i64, 0))
    keys = loops.var(ir.ArrayType(i64, _BLOCK))
    zero, one, block = ir.Constant(i64, 0), ir.Constant(i64, 1), ir.Constant(i64, _BLOCK)

    def load(pointer, i):
        return b.sext(b.load(b.gep(pointer, [i])), i64)

    def key_of(i):
        """The event's slot in ``out``, or ``n_out`` when a lookup is out of range."""
        pair = b.add(b.mul(load(ch_p, i), n_types), load(et_p, i))
        day = load(day_p, i)
        code = load(code_p, i)
        ok = b.and_(b.icmp_unsigned("<", pair, n_cell_of), b.icmp_unsigned("<", day, n_days))
        ok = b.and_(ok, b.icmp_unsigned("<", code, width))
        cell = b.sext(b.load(b.gep(cell_of, [b.select(ok, pair, zero)])), i64)
        band = b.sext(b.load(b.gep(band_of, [b.select(ok, day, zero)])), i64)
        key = b.add(b.mul(b.add(b.mul(cell, n_bands), band), width), code)
        return b.select(b.and_(ok, b.icmp_unsigned("<", key, n_out)), key, n_out)

    def each_block(first):
        last = b.select(b.icmp_signed("<", b.add(first, block), n), b.add(first, block), n)
        size = b.sub(last, first)
        loops.loop(
            zero, size, one, lambda j: b.store(key_of(b.add(first, j)), b.gep(keys, [zero, j]))
        )

        def scatter(j):
            key = b.load(b.gep(keys, [zero, j]))
            with b.if_else(b.icmp_unsigned("<", key, n_out), likely=True) as (fine, off):
                with fine:
                    target = b.gep(out, [key])
                    old = b.load(target)
                    if what == "count":
                        new = b.add(old, ir.Constant(i32, 1))
                    else:
                        v = b.load(b.gep(value_p, [b.add(first, j)]))
                        new = b.select(b.icmp_signed("<", v, old), v, old)
                    b.store(new, target)
                with off:
                    b.store(b.add(b.load(bad), one), bad)

        loops.loop(zero, size, one, scatter)

    loops.loop(zero, n, block, each_block)
    loops.finish(b.load(bad))
    return module
