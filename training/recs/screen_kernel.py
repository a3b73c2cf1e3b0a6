"""A native kernel for ALS top-N: dot products of users with every item, keeping only
the scores at or above a per-user threshold.

A BLAS product writes every score (64 users x 50,000 items is 12.8 MB a block) and a
second pass then reads them all back to find each user's best few. This kernel scores
items tile by tile in registers and writes out only the (item, score) pairs that reach
the user's threshold, typically a few hundred of 50,000. It is compiled at first use
with LLVM through llvmlite (already installed for :mod:`training.compiled_forest`), for
the host CPU's vector instructions: ~80 GFLOP/s a core here, where OpenBLAS reaches
~51 on this shape before any selection.

Its scores are float32 sums of the products in factor order (fused multiply-adds where
the CPU has them), so they may differ from other products of the same vectors by the
rounding that :func:`training.recs.als.rounding_bound` bounds; callers rescore what
they keep.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

LANES = 8
"""float32 lanes of a vector register (AVX2)."""
TILE = 2 * LANES
"""Items scored together: two vectors."""
USERS = 6
"""Users scored together: 6 users x 2 vectors = 12 accumulators, of 16 registers."""
UNROLL = 4
"""Factor steps per loop iteration."""
CHUNK_TILES = 16
"""Item tiles scored for every user of a call before the next ones (64 KB of factors)."""


def pack_tiles(factors: np.ndarray) -> np.ndarray:
    """Item factors (items, d) laid out for :func:`screen`: (tiles, d, TILE) float32, item
    ``j`` in tile ``j // TILE``, lane ``j % TILE``; the last tile is padded with zero
    items (which score 0: :func:`screen` returns them, callers drop columns >= items)."""
    n, d = factors.shape
    n_tiles = -(-n // TILE)
    padded = np.zeros((n_tiles * TILE, d), np.float32)
    padded[:n] = factors
    return np.ascontiguousarray(padded.reshape(n_tiles, TILE, d).transpose(0, 2, 1))


def screen(
    users: np.ndarray, tiles: np.ndarray, thresholds: np.ndarray, cap: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per user (row of ``users``, float32 (n, d)), the items of ``tiles`` (see
    :func:`pack_tiles`) whose dot product is >= the user's float32 threshold:
    ``(columns, scores, counts)``, columns int32 and scores float32 (n, cap), each row's
    first ``min(count, cap)`` slots filled in increasing column order. A count above
    ``cap`` means the row overflowed and holds only its first ``cap`` items.
    Releases the GIL: callers may run blocks on several threads."""
    n, d = users.shape
    if tiles.ndim != 3 or tiles.shape[1:] != (d, TILE) or tiles.dtype != np.float32:
        raise ValueError(f"tiles must be float32 (tiles, {d}, {TILE}), got {tiles.shape}")
    padded_rows = -(-n // USERS) * USERS
    block = np.zeros((padded_rows, d), np.float32)
    block[:n] = users
    limits = np.full(padded_rows, np.inf, np.float32)  # padding rows keep nothing
    limits[:n] = thresholds
    columns = np.empty((padded_rows, cap), np.int32)
    scores = np.empty((padded_rows, cap), np.float32)
    counts = np.zeros(padded_rows, np.int32)
    kernel = _kernel(d)
    kernel(
        block.ctypes.data,
        padded_rows,
        np.ascontiguousarray(tiles).ctypes.data,
        tiles.shape[0],
        CHUNK_TILES,
        limits.ctypes.data,
        columns.ctypes.data,
        scores.ctypes.data,
        counts.ctypes.data,
        cap,
    )
    return columns[:n], scores[:n], counts[:n]


def _kernel(d: int):
    """The compiled kernel for ``d`` factors (compiled once per process, ~0.1 s)."""
    p, i = ctypes.c_void_p, ctypes.c_int64
    signature = ctypes.CFUNCTYPE(None, p, i, p, i, i, p, p, p, p, i)
    with _LOCK:
        if d not in _COMPILED:
            engine = _compile(_module(d))
            _COMPILED[d] = (engine, signature(engine.get_function_address("screen")))
        return _COMPILED[d][1]


_LOCK = threading.Lock()
_COMPILED: dict[int, tuple[Any, Any]] = {}  # factors -> (engine, its ctypes function)


def _compile(module: Any) -> Any:
    """An ``llvmlite.ir`` module compiled at -O3 for the host CPU (an MCJIT engine)."""
    import llvmlite.binding as llvm

    llvm.initialize()
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    parsed = llvm.parse_assembly(str(module))
    parsed.verify()
    machine = llvm.Target.from_triple(llvm.get_default_triple()).create_target_machine(
        cpu=llvm.get_host_cpu_name(), features=llvm.get_host_cpu_features().flatten(), opt=3
    )
    passes = llvm.ModulePassManager()
    builder = llvm.PassManagerBuilder()
    builder.opt_level = 3
    builder.populate(passes)
    passes.run(parsed)
    engine = llvm.create_mcjit_compiler(parsed, machine)
    engine.finalize_object()
    return engine


class _Loops:
    """An ``llvmlite.ir`` function under construction, with C-like helpers: variables
    are allocas in the entry block (the optimiser turns them into registers) and
    :meth:`loop` is a counted ``for``. :meth:`finish` closes the function."""

    def __init__(self, fn: Any) -> None:
        from llvmlite import ir

        self.fn = fn
        self.head = ir.IRBuilder(fn.append_basic_block("entry"))
        self.body = fn.append_basic_block("start")
        self.b = ir.IRBuilder(self.body)

    def var(self, kind: Any, initial: Any = None) -> Any:
        """A local variable (pointer), optionally set to ``initial`` at the start."""
        pointer = self.head.alloca(kind)
        if initial is not None:
            self.head.store(initial, pointer)
        return pointer

    def loop(self, start: Any, stop: Any, step: Any, body: Callable[[Any], None]) -> None:
        """``for (i = start; i < stop; i += step) body(i)``, signed 64-bit ``i``."""
        from llvmlite import ir

        b = self.b
        counter = self.var(ir.IntType(64))
        b.store(start, counter)
        test, run, done = (self.fn.append_basic_block() for _ in range(3))
        b.branch(test)
        b.position_at_end(test)
        b.cbranch(b.icmp_signed("<", b.load(counter), stop), run, done)
        b.position_at_end(run)
        body(b.load(counter))
        b.store(b.add(b.load(counter), step), counter)
        b.branch(test)
        b.position_at_end(done)

    def finish(self, value: Any = None) -> None:
        """Return ``value`` (None: void) and link the entry block to the body."""
        if value is None:
            self.b.ret_void()
        else:
            self.b.ret(value)
        self.head.branch(self.body)


def _module(d: int):
    """The kernel's LLVM IR, specialised for ``d`` factors. In C terms::

    for (c = 0; c < n_tiles; c += chunk)            // items in cache-sized chunks
      for (g = 0; g < n_users; g += USERS)          // a register block of users
        for (t = c; t < min(c + chunk, n_tiles); t++) {
          acc[USERS][TILE] = 0;
          for (k = 0; k < d; k++)
            acc[r][l] += users[g + r][k] * tiles[t][k][l];   // vector FMAs
          for each r, l with acc[r][l] >= limit[g + r]:      // vector compare
            if (count[g + r] < cap) keep (t * TILE + l, acc[r][l]) in row g + r;
            count[g + r]++;
        }
    """
    from llvmlite import ir

    f32, i64, i32, i16, i8 = (
        ir.FloatType(),
        ir.IntType(64),
        ir.IntType(32),
        ir.IntType(16),
        ir.IntType(8),
    )
    vec = ir.VectorType(f32, LANES)
    module = ir.Module("screen")
    fpp, ipp = f32.as_pointer(), i32.as_pointer()
    signature = ir.FunctionType(ir.VoidType(), [fpp, i64, fpp, i64, i64, fpp, ipp, fpp, ipp, i64])
    fn = ir.Function(module, signature, "screen")
    users, n_users, tiles, n_tiles, chunk, limits, out_col, out_score, counts, cap = fn.args
    for arg in fn.args:
        if isinstance(arg.type, ir.PointerType):
            arg.add_attribute("noalias")
    fmuladd = ir.Function(module, ir.FunctionType(vec, [vec, vec, vec]), "llvm.fmuladd.v8f32")
    cttz = ir.Function(module, ir.FunctionType(i16, [i16, ir.IntType(1)]), "llvm.cttz.i16")
    code = _Loops(fn)
    b, loop = code.b, code.loop

    def const(value: int, kind=i64):
        return ir.Constant(kind, value)

    def broadcast(scalar):
        one = b.insert_element(ir.Constant(vec, ir.Undefined), scalar, const(0, i32))
        return b.shuffle_vector(
            one, ir.Constant(vec, ir.Undefined), ir.Constant(ir.VectorType(i32, LANES), [0] * LANES)
        )

    def load_vec(pointer, offset):
        return b.load(b.bitcast(b.gep(pointer, [offset]), vec.as_pointer()), align=4)

    acc = [[code.var(vec) for _ in range(2)] for _ in range(USERS)]
    spill = code.var(ir.ArrayType(f32, TILE))
    pending = code.var(i16)

    def keep(user, tile, values, mask) -> None:
        """Write the lanes set in ``mask`` (rare: only scores at the user's limit)."""
        for h in range(2):
            slot = b.gep(spill, [const(0, i32), const(h * LANES, i32)])
            b.store(values[h], b.bitcast(slot, vec.as_pointer()), align=4)
        b.store(mask, pending)
        count_at = b.gep(counts, [user])
        test, run, done = (fn.append_basic_block() for _ in range(3))
        b.branch(test)
        b.position_at_end(test)
        bits = b.load(pending)
        b.cbranch(b.icmp_unsigned("!=", bits, const(0, i16)), run, done)
        b.position_at_end(run)
        lane = b.zext(b.call(cttz, [bits, ir.Constant(ir.IntType(1), 1)]), i32)
        count = b.load(count_at)
        with b.if_then(b.icmp_signed("<", b.sext(count, i64), cap)):
            at = b.add(b.mul(user, cap), b.sext(count, i64))
            column = b.add(b.trunc(b.mul(tile, const(TILE)), i32), lane)
            b.store(column, b.gep(out_col, [at]))
            b.store(b.load(b.gep(spill, [const(0, i32), lane])), b.gep(out_score, [at]))
        b.store(b.add(count, const(1, i32)), count_at)
        b.store(b.and_(bits, b.sub(bits, const(1, i16))), pending)
        b.branch(test)
        b.position_at_end(done)

    def user_group(chunk_start, chunk_end, group) -> None:
        rows = [b.add(group, const(r)) for r in range(USERS)]
        limit = [broadcast(b.load(b.gep(limits, [row]))) for row in rows]
        row_start = [b.mul(row, const(d)) for row in rows]

        def factor_step(tile_start, k) -> None:
            at = b.add(tile_start, b.mul(k, const(TILE)))
            item = [load_vec(tiles, b.add(at, const(h * LANES))) for h in range(2)]
            for r in range(USERS):
                u = broadcast(b.load(b.gep(users, [b.add(row_start[r], k)])))
                for h in range(2):
                    b.store(b.call(fmuladd, [u, item[h], b.load(acc[r][h])]), acc[r][h])

        def tile(t) -> None:
            for r in range(USERS):
                for h in range(2):
                    b.store(ir.Constant(vec, [0.0] * LANES), acc[r][h])
            tile_start = b.mul(t, const(d * TILE))
            whole = d - d % UNROLL

            def unrolled(k) -> None:
                for step in range(UNROLL):
                    factor_step(tile_start, b.add(k, const(step)))

            loop(const(0), const(whole), const(UNROLL), unrolled)
            for k in range(whole, d):
                factor_step(tile_start, const(k))
            for r in range(USERS):
                values = [b.load(acc[r][h]) for h in range(2)]
                halves = [
                    b.zext(b.bitcast(b.fcmp_ordered(">=", values[h], limit[r]), i8), i16)
                    for h in range(2)
                ]
                mask = b.or_(halves[0], b.shl(halves[1], const(LANES, i16)))
                with b.if_then(b.icmp_unsigned("!=", mask, const(0, i16)), likely=False):
                    keep(rows[r], t, values, mask)

        loop(chunk_start, chunk_end, const(1), tile)

    def item_chunk(start) -> None:
        end = b.add(start, chunk)
        end = b.select(b.icmp_signed("<", end, n_tiles), end, n_tiles)
        loop(const(0), n_users, const(USERS), lambda group: user_group(start, end, group))

    loop(const(0), n_tiles, chunk, item_chunk)
    code.finish()
    return module
