"""features.divide: the compiled ratio against float64 numpy, rounded once."""

from __future__ import annotations

import numpy as np
import pytest

from features import divide, kernels

TYPES = [np.int8, np.int16, np.int32, np.int64, np.float32, np.float64]


def _values(dtype, n, rng):
    if np.issubdtype(dtype, np.integer):
        return rng.integers(-3, 40, n).astype(dtype)
    v = (rng.normal(size=n) * 50).astype(dtype)
    v[rng.random(n) < 0.1] = 0
    v[rng.random(n) < 0.05] = np.nan
    return v


@pytest.mark.parametrize("num_type", TYPES)
@pytest.mark.parametrize("den_type", TYPES)
def test_ratio_is_the_float64_quotient_rounded_once(num_type, den_type):
    rng = np.random.default_rng(3)
    num, den = _values(num_type, 5000, rng), _values(den_type, 5000, rng)
    for undefined, scale in ((np.nan, 1.0), (0.0, 30 / 7)):
        with np.errstate(divide="ignore", invalid="ignore"):
            quotient = num.astype(np.float64) * scale / den.astype(np.float64)
        want = np.where(den == 0, np.float32(undefined), quotient.astype(np.float32))
        got = divide.ratio(num, den, undefined, scale)
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, want)  # NaN where NaN, bit for bit elsewhere


def test_kernels_ratio_uses_it_and_keeps_numpy_for_the_rest():
    num, den = np.array([1, 2, 3], np.int32), np.array([2, 0, 3], np.int32)
    np.testing.assert_array_equal(kernels.ratio(num, den, -1.0), [0.5, -1.0, 1.0])
    broadcast = kernels.ratio(np.array([[1.0], [2.0]]), np.array([1.0, 0.0]), 9.0)
    np.testing.assert_array_equal(broadcast, [[1.0, 9.0], [2.0, 9.0]])
    unsigned = kernels.ratio(np.array([3], np.uint16), np.array([4], np.uint16), 0.0)
    np.testing.assert_array_equal(unsigned, [0.75])


def test_wrong_inputs_are_refused():
    with pytest.raises(TypeError, match="two 1-d int / float arrays"):
        divide.ratio(np.zeros(3), np.zeros(4), 0.0)
    with pytest.raises(TypeError, match="two 1-d int / float arrays"):
        divide.ratio(np.zeros(3, bool), np.zeros(3), 0.0)
    strided = np.arange(10.0)[::2]  # not contiguous: copied, still right
    want = (strided / (strided + 1)).astype(np.float32)
    np.testing.assert_array_equal(divide.ratio(strided, strided + 1, 0.0), want)
