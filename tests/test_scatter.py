"""The compiled scatter loops against numpy's ``ufunc.at``."""

from __future__ import annotations

import numpy as np
import pytest

from features import kernels, scatter


@pytest.mark.parametrize("key_dtype", [np.int32, np.int64])
def test_count_and_add_equal_add_at(key_dtype):
    rng = np.random.default_rng(0)
    key = rng.integers(0, 1000, 50_000).astype(key_dtype)
    weights = rng.normal(size=50_000)
    want_counts = np.zeros(1000, np.int32)
    np.add.at(want_counts, key, 1)
    got_counts = np.zeros(1000, np.int32)
    scatter.count(got_counts, key)
    np.testing.assert_array_equal(got_counts, want_counts)
    want_sums = np.zeros(1000)
    np.add.at(want_sums, key, weights)  # row order: the same rounding
    got_sums = np.zeros(1000)
    scatter.add(got_sums, key, weights)
    np.testing.assert_array_equal(got_sums, want_sums)


@pytest.mark.parametrize("key_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("value_dtype", [np.int8, np.int16, np.int32, np.int64])
def test_minimum_equals_minimum_at(key_dtype, value_dtype):
    rng = np.random.default_rng(1)
    info = np.iinfo(value_dtype)
    key = rng.integers(0, 300, 20_000).astype(key_dtype)
    values = rng.integers(info.min, info.max, 20_000, endpoint=True).astype(value_dtype)
    want = np.full(400, info.max, value_dtype)  # groups 300.. get no row: stay at fill
    np.minimum.at(want, key, values)
    np.testing.assert_array_equal(kernels.minimum(key, values, 400, info.max), want)


def test_keys_out_of_range_raise_and_write_nothing_for_them():
    out = np.zeros(5, np.int32)
    with pytest.raises(IndexError, match=r"2 group keys outside 0 \.\. 4"):
        scatter.count(out, np.array([0, 5, -1, 4]))
    assert out.tolist() == [1, 0, 0, 0, 1]  # the valid rows were counted, nothing else


def test_wrong_types_are_refused():
    with pytest.raises(TypeError, match="scatter keys"):
        scatter.count(np.zeros(3, np.int32), np.array([0.0, 1.0]))
    with pytest.raises(TypeError, match="int32"):
        scatter.count(np.zeros(3, np.int64), np.array([0, 1]))
    with pytest.raises(TypeError, match="signed integers"):
        scatter.minimum(np.zeros(3, np.float32), np.array([0, 1]), np.zeros(2, np.float32))
    with pytest.raises(ValueError, match="differ in shape"):
        scatter.add(np.zeros(3), np.array([0, 1]), np.zeros(3))


def test_accumulate_takes_any_integer_keys():
    key = np.array([2, 0, 2, 1], dtype=np.uint16)[::-1]  # unsigned and not contiguous
    assert kernels.accumulate(key, 3).tolist() == [1, 1, 2]
    assert kernels.accumulate(key, 3, np.array([1.0, 2.0, 3.0, 4.0])).tolist() == [3.0, 1.0, 6.0]
