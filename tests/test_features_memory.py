"""features.memory: the allocator settings of a build are set on entry and restored on exit."""

from __future__ import annotations

import numpy as np
import pytest

from features.memory import reuse_freed_memory

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
