"""features.cells: fused per-(cell, band, customer) counts and minima against numpy."""

from __future__ import annotations

import numpy as np
import pytest

from features import cells

N_TYPES, N_CHANNELS, DAYS, WIDTH = 5, 3, 40, 101


def _events(n, seed=0, code_dtype=np.int64, day_dtype=np.int32):
    rng = np.random.default_rng(seed)
    return (
        rng.integers(0, WIDTH, n).astype(code_dtype),
        rng.integers(0, N_CHANNELS, n).astype(np.int8),
        rng.integers(0, N_TYPES, n).astype(np.int8),
        rng.integers(0, DAYS, n).astype(day_dtype),
        rng.integers(0, 10**6, n).astype(np.int32),
    )


def _tables(seed=1):
    rng = np.random.default_rng(seed)
    cell_of = rng.integers(0, 4, N_CHANNELS * N_TYPES).astype(np.int16)
    cell_of[-1] = 4  # five cells
    band_of = np.searchsorted([7, 30], np.arange(DAYS), side="right").astype(np.int8)
    return cell_of, band_of


@pytest.mark.parametrize("code_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("day_dtype", [np.int16, np.int32])
def test_count_and_minimum_equal_numpy(code_dtype, day_dtype):
    code, channel, event_type, day, value = _events(30_000, 0, code_dtype, day_dtype)
    cell_of, band_of = _tables()
    n_bands = int(band_of.max()) + 1
    row = cell_of[channel * N_TYPES + event_type].astype(np.int64) * n_bands + band_of[day]
    key = row * WIDTH + code
    want = np.bincount(key, minlength=5 * n_bands * WIDTH).reshape(-1, WIDTH)
    got = cells.count(code, channel, event_type, day, cell_of, band_of, N_TYPES, WIDTH)
    assert got.dtype == np.int32 and got.shape == want.shape
    np.testing.assert_array_equal(got, want)
    fill = np.iinfo(np.int32).max
    want_min = np.full(5 * n_bands * WIDTH, fill, np.int32)
    np.minimum.at(want_min, key, value)
    got_min = cells.minimum(
        code, channel, event_type, day, value, cell_of, band_of, N_TYPES, WIDTH, fill
    )
    np.testing.assert_array_equal(got_min.ravel(), want_min)


def test_more_events_than_a_block_and_none():
    """Keys are worked out 2,048 at a time: a partial last block, and an empty log."""
    cell_of, band_of = _tables()
    for n in (0, 1, 2047, 2048, 2049, 5000):
        code, channel, event_type, day, _ = _events(n, n)
        got = cells.count(code, channel, event_type, day, cell_of, band_of, N_TYPES, WIDTH)
        assert int(got.sum()) == n


@pytest.mark.parametrize(
    "change",
    [
        ("code", WIDTH),  # a customer past the width
        ("day", DAYS),  # a day past the band table
        ("channel", N_CHANNELS + 5),  # a (channel, type) past the cell table
        ("day", -1),
    ],
)
def test_out_of_range_raises(change):
    code, channel, event_type, day, _ = _events(100)
    cols = {"code": code, "channel": channel, "event_type": event_type, "day": day}
    field, bad = change
    cols[field][[3, 50]] = bad
    cell_of, band_of = _tables()
    with pytest.raises(IndexError, match="2 events with a channel, type, day or customer"):
        cells.count(*cols.values(), cell_of, band_of, N_TYPES, WIDTH)


def test_wrong_inputs_are_refused():
    code, channel, event_type, day, value = _events(10)
    cell_of, band_of = _tables()
    with pytest.raises(TypeError, match="code"):
        cells.count(code.astype(float), channel, event_type, day, cell_of, band_of, 5, WIDTH)
    with pytest.raises(TypeError, match="day"):
        cells.count(code, channel, event_type, day[:5], cell_of, band_of, 5, WIDTH)
    with pytest.raises(TypeError, match="value: need int32"):
        cells.minimum(
            code, channel, event_type, day, value.astype(np.int64), cell_of, band_of, 5, WIDTH, 0
        )
    with pytest.raises(ValueError, match="cell_of and band_of"):
        cells.count(code, channel, event_type, day, cell_of - 9, band_of, 5, WIDTH)
