"""features.native: compiled loops are kept on disk and reloaded, and a bad entry is
compiled again, never run."""

from __future__ import annotations

import numpy as np
import pytest

from features import native, scatter


def _count_with_fresh_engine() -> list[int]:
    """Compile (or load) the int64-key count loop in a new engine and run it."""
    engine = native._compile(scatter._module("count_k64"))
    fn = scatter._COUNT(engine.get_function_address("count_k64"))
    out = np.zeros(4, np.int32)
    key = np.array([0, 3, 3, 1, 3], dtype=np.int64)
    assert fn(out.ctypes.data, key.ctypes.data, len(key), len(out)) == 0
    return out.tolist()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("OMNI_NATIVE_CACHE", str(tmp_path / "native"))
    return tmp_path / "native"


def test_compiled_loops_are_cached_and_reloaded(cache, monkeypatch):
    assert _count_with_fresh_engine() == [1, 1, 0, 3]
    (entry,) = cache.glob("*.o")
    assert entry.stat().st_size > 32
    calls = []
    real_read = native._cache_read
    monkeypatch.setattr(native, "_cache_read", lambda key: calls.append(key) or real_read(key))
    monkeypatch.setattr(native, "_cache_write", lambda *_: pytest.fail("recompiled"))
    assert _count_with_fresh_engine() == [1, 1, 0, 3]
    assert calls == [entry.stem]


def test_a_damaged_entry_is_compiled_again_and_replaced(cache):
    _count_with_fresh_engine()
    (entry,) = cache.glob("*.o")
    good = entry.read_bytes()
    entry.write_bytes(good[:32] + b"\x90" * (len(good) - 32))  # digest no longer matches
    assert _count_with_fresh_engine() == [1, 1, 0, 3]
    assert entry.read_bytes() == good
    entry.write_bytes(good[:40])  # truncated
    assert _count_with_fresh_engine() == [1, 1, 0, 3]
    assert entry.read_bytes() == good


def test_cache_off_or_unwritable_still_compiles(tmp_path, monkeypatch):
    monkeypatch.setenv("OMNI_NATIVE_CACHE", "off")
    assert native.cache_dir() is None
    assert _count_with_fresh_engine() == [1, 1, 0, 3]
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("OMNI_NATIVE_CACHE", str(blocker / "native"))
    assert _count_with_fresh_engine() == [1, 1, 0, 3]
    assert list(tmp_path.iterdir()) == [blocker]
