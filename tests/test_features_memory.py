"""features.memory: the allocator settings of a build are set on entry and restored on exit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from features.memory import random_access, reuse_freed_memory

multiarray = pytest.importorskip("numpy._core.multiarray")


def _huge_pages() -> bool:
    """numpy's current madvise-hugepage setting (read by setting it back)."""
    value = multiarray._set_madvise_hugepage(True)
    multiarray._set_madvise_hugepage(value)
    return bool(value)


@pytest.mark.parametrize("before", [True, False])
def test_numpy_huge_pages_are_off_inside_and_restored_after(before):
    """Issue 3: 2 MB page faults with compaction were a third of a 10M-event build."""
    old = multiarray._set_madvise_hugepage(before)
    try:
        with reuse_freed_memory():
            assert _huge_pages() is False
            with reuse_freed_memory():  # nested blocks keep it off
                np.zeros(1 << 20).sum()
            assert _huge_pages() is False
        assert _huge_pages() is before
    finally:
        multiarray._set_madvise_hugepage(old)


def _thp_mode() -> str:
    try:
        text = Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
    except OSError:
        return "unknown"
    return text.split("[", 1)[1].split("]", 1)[0]


def _huge_kb(array: np.ndarray) -> int:
    """AnonHugePages (kB) of the mappings that overlap ``array`` (the advice splits
    the mapping at 2 MB boundaries)."""
    start, stop = array.ctypes.data, array.ctypes.data + array.nbytes
    kb, inside = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()[0]
        if "-" in head and not head.endswith(":"):
            lo, hi = (int(x, 16) for x in head.split("-"))
            inside = lo < stop and start < hi
        elif inside and head == "AnonHugePages:":
            kb += int(line.split()[1])
    return kb


@pytest.mark.parametrize(("dtype", "fill"), [(np.int32, 7), (np.float64, 0.0), (np.uint8, 1)])
def test_random_access_arrays_are_filled(dtype, fill):
    out = random_access((3, 5), dtype, fill)
    assert out.shape == (3, 5) and out.dtype == dtype and (out == fill).all()
    assert (random_access(0, dtype, fill)).size == 0


@pytest.mark.skipif(_thp_mode() not in ("madvise", "always"), reason="no transparent huge pages")
def test_large_random_access_arrays_get_huge_pages():
    """Issue 3: scatters over 4 KB pages missed the TLB (30M events: 8.9 s -> 6.8 s)."""
    with reuse_freed_memory():
        big = random_access(64 << 20, np.uint8, 0)  # 64 MB, touched by the fill
        assert _huge_kb(big) >= 2048
