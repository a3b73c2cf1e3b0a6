"""The native screening kernel of ALS top-N against float64 numpy dot products."""

from __future__ import annotations

import numpy as np
import pytest

from training.recs.screen_kernel import TILE, pack_tiles, screen


@pytest.mark.parametrize("n_users, d, n_items", [(13, 64, 1000), (6, 7, 40), (1, 3, 16)])
def test_screen_keeps_exactly_the_items_at_or_above_each_limit(n_users, d, n_items):
    # user counts off the 6-user block, factor counts off the 4-step unroll, items off
    # the 16-item tile: padding must neither be kept nor shift a column
    rng = np.random.default_rng(d)
    users = rng.normal(size=(n_users, d)).astype(np.float32)
    items = rng.normal(size=(n_items, d)).astype(np.float32)
    exact = users.astype(np.float64) @ items.T.astype(np.float64)
    limits = np.quantile(exact, 0.9, axis=1).astype(np.float32)
    limits[0] = np.inf  # keeps nothing
    columns, scores, counts = screen(users, pack_tiles(items), limits, cap=n_items + TILE)
    tol = 2 * d * np.finfo(np.float32).eps * np.abs(users).sum(1) * np.abs(items).max()
    assert counts[0] == 0
    for row in range(n_users):
        kept = columns[row, : counts[row]]
        assert (np.diff(kept) > 0).all() and (kept < n_items).all()
        np.testing.assert_allclose(scores[row, : counts[row]], exact[row, kept], atol=tol[row])
        assert (scores[row, : counts[row]] >= limits[row]).all()
        sure_in = np.flatnonzero(exact[row] >= limits[row] + tol[row])
        sure_out = np.flatnonzero(exact[row] < limits[row] - tol[row])
        assert set(sure_in) <= set(kept) and not set(sure_out) & set(kept)


def test_screen_counts_past_its_cap_and_keeps_the_first_columns():
    rng = np.random.default_rng(1)
    users = rng.normal(size=(8, 16)).astype(np.float32)
    items = rng.normal(size=(12 * TILE, 16)).astype(np.float32)
    limits = np.full(8, -np.inf, np.float32)  # every item qualifies
    columns, _, counts = screen(users, pack_tiles(items), limits, cap=50)
    assert (counts == 12 * TILE).all()  # > cap: an overflow the caller must see
    np.testing.assert_array_equal(columns, np.broadcast_to(np.arange(50), (8, 50)))


def test_screen_rejects_tiles_of_another_layout():
    users = np.zeros((2, 8), np.float32)
    with pytest.raises(ValueError, match="tiles must be float32"):
        screen(users, np.zeros((3, 8, 8), np.float32), np.zeros(2, np.float32), cap=4)
