"""Loops compiled to machine code at first use, with LLVM through llvmlite.

Some loops have no fast numpy form: a scatter with a per-row target (``ufunc.at``
costs ~15 ns a row and holds the GIL), or a dot product that must not write all its
results. Such a loop is written once as LLVM IR (with :class:`Loops` for the
bookkeeping), compiled for the host CPU and called through ctypes, which releases the
GIL for the call. llvmlite is already installed for the compiled forests
(:mod:`training.compiled_forest`).

Compiling takes 20-50 ms a loop, and a feature build uses about 15: the machine code is
kept on disk, keyed by the IR, the CPU and the LLVM version, in ``OMNI_NATIVE_CACHE``
(default ``~/.cache/omni-retail/native``; ``off`` compiles every time), so a process
loads it in about a millisecond. Entries are written atomically and carry a digest of
their bytes; one that does not match is compiled again and replaced."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

_LOCK = threading.Lock()
_COMPILED: dict[str, tuple[Any, Any]] = {}  # name -> (engine, its ctypes function)


def compiled(name: str, build: Callable[[], Any], function: str, signature: Any) -> Any:
    """``function`` of the module ``build()`` returns (an ``llvmlite.ir`` module), as a
    ctypes function of ``signature`` (a ``ctypes.CFUNCTYPE``); compiled at -O3 for the
    host CPU once per process under ``name``, the engine kept alive with it."""
    with _LOCK:
        if name not in _COMPILED:
            engine = _compile(build())
            _COMPILED[name] = (engine, signature(engine.get_function_address(function)))
        return _COMPILED[name][1]


def _compile(module: Any) -> Any:
    import llvmlite
    import llvmlite.binding as llvm

    llvm.initialize()
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    text = str(module)
    cpu, features = llvm.get_host_cpu_name(), llvm.get_host_cpu_features().flatten()
    triple = llvm.get_default_triple()
    key = hashlib.sha256(
        "\0".join([text, cpu, features, triple, llvmlite.__version__]).encode()
    ).hexdigest()
    cached = _cache_read(key)
    parsed = llvm.parse_assembly(text)
    parsed.verify()
    machine = llvm.Target.from_triple(triple).create_target_machine(
        cpu=cpu, features=features, opt=3
    )
    if cached is None:  # optimise only what will be compiled
        passes = llvm.ModulePassManager()
        builder = llvm.PassManagerBuilder()
        builder.opt_level = 3
        builder.populate(passes)
        passes.run(parsed)
    engine = llvm.create_mcjit_compiler(parsed, machine)
    engine.set_object_cache(
        notify_func=lambda _module, data: _cache_write(key, data),
        getbuffer_func=lambda _module: cached,
    )
    engine.finalize_object()
    return engine


def cache_dir() -> Path | None:
    """Where compiled loops are kept (None: ``OMNI_NATIVE_CACHE=off``)."""
    where = os.environ.get("OMNI_NATIVE_CACHE", "")
    if where.lower() == "off":
        return None
    return Path(where) if where else Path.home() / ".cache" / "omni-retail" / "native"


def _cache_read(key: str) -> bytes | None:
    """The object file cached under ``key`` if it is there and intact, else None."""
    folder = cache_dir()
    if folder is None:
        return None
    try:
        raw = (folder / f"{key}.o").read_bytes()
    except OSError:
        return None
    digest, data = raw[:32], raw[32:]
    return data if hashlib.sha256(data).digest() == digest else None


def _cache_write(key: str, data: bytes) -> None:
    """Keep a compiled object (temp file, then rename: readers never see half of one).
    A cache that cannot be written only means compiling again next time."""
    folder = cache_dir()
    if folder is None:
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, suffix=".tmp", delete=False) as tmp:
            tmp.write(hashlib.sha256(data).digest() + data)
        os.replace(tmp.name, folder / f"{key}.o")
    except OSError:
        with contextlib.suppress(OSError, NameError):
            os.unlink(tmp.name)


class Loops:
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
