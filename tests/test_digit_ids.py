"""features.digit_ids: "prefix + digits" ids parsed in place by a compiled loop."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features import digit_ids

BIG = 1 << 28


def _expect(columns: list[list]) -> tuple[list[list[int]], list[str]]:
    distinct = sorted({v for col in columns for v in col if v is not None})
    at = {v: i for i, v in enumerate(distinct)}
    return [[-1 if v is None else at[v] for v in col] for col in columns], distinct


def _check(*arrays, uniques: bool = True) -> None:
    got = digit_ids.factorize(list(arrays), uniques, BIG)
    assert got is not None, "expected the compiled path to take these ids"
    columns = [a.to_pylist() for a in arrays]
    want_codes, want_ids = _expect(columns)
    codes, index = got
    assert [c.tolist() for c in codes] == want_codes
    assert all(c.dtype == np.int32 for c in codes)
    if uniques:
        assert list(index) == want_ids
        assert isinstance(index.dtype, pd.StringDtype)
    else:
        assert index is None


@pytest.mark.parametrize(
    "values",
    [
        ["C0832840", "C0000001", None, "C0832840"],  # one word exactly
        ["S0206", "S0017", "S0206"],  # shorter than a word
        ["O000481624", "O000000001", None, None, "O009999999"],  # two words
        ["AB-1234-5678", "AB-0000-0001", "AB-1234-5677"],  # constants in the middle
        ["12345678X", "00000001X"],  # a constant after the last digit
        ["123456789012345678", "123456789012345601"],  # 18 digits: the most
        ["7"],
    ],
)
def test_ids_of_one_pattern(values):
    _check(pa.array(values, pa.string()))
    _check(pa.array(values, pa.large_string()), uniques=False)


def test_chunks_slices_and_a_second_column_share_one_numbering():
    whole = pa.array([f"C{n:07d}" if n % 5 else None for n in range(3000)], pa.large_string())
    sliced = whole.slice(17, 2500)  # an offset into the offsets and the validity bitmap
    chunked = pa.chunked_array([whole.slice(0, 1000), whole.slice(1000, 0), whole.slice(1000)])
    table = pa.array(["C9999999", "C0000004"], pa.string())
    _check(sliced, chunked, table)


def test_ids_at_the_very_end_of_the_data_buffer_are_read_safely():
    """The loop reads whole 8-byte words: the last ids are read from a padded copy."""
    for width in range(1, 12):
        top = 10 ** min(width, 8)  # a range the presence table takes
        values = [f"{n:0{width}d}" for n in range(0, top, max(1, top // 97))]
        arr = pa.array(values, pa.string())
        data = arr.buffers()[2]
        exact = pa.Array.from_buffers(  # a data buffer that ends where the last id does
            pa.string(), len(arr), [None, arr.buffers()[1], pa.py_buffer(data.to_pybytes())]
        )
        _check(exact)


@pytest.mark.parametrize(
    "values",
    [
        ["C0000001", "X0000002"],  # another constant character
        ["C0000001", "C000001"],  # another width
        ["C0000001", "C00000A1"],  # a letter where the first id has a digit
        ["ABC", "ABD"],  # no digit at all
        ["1234567890123456789"],  # 19 digits: would overflow int64
        ["a1", "á1"],  # another byte in a constant place (UTF-8)
    ],
)
def test_other_shapes_decline(values):
    assert digit_ids.factorize([pa.array(values, pa.string())], True, BIG) is None


def test_a_spread_beyond_the_table_limit_declines():
    arr = pa.array(["C0000000", "C9999999"], pa.string())
    assert digit_ids.factorize([arr], True, 10_000_000) is not None
    assert digit_ids.factorize([arr], True, 9_999_999) is None


def test_all_null_and_non_text_decline():
    assert digit_ids.factorize([pa.array([None, None], pa.string())], True, BIG) is None
    assert digit_ids.factorize([pa.array([1, 2])], True, BIG) is None


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.one_of(st.none(), st.integers(0, 10**7 - 1)), min_size=1, max_size=60),
    st.sampled_from(["C", "", "ID-", "x/"]),
    st.sampled_from(["", "-Z"]),
)
def test_any_ids_of_a_pattern(numbers, prefix, suffix):
    if all(n is None for n in numbers):
        numbers = [*numbers, 0]
    values = [None if n is None else f"{prefix}{n:07d}{suffix}" for n in numbers]
    _check(pa.array(values, pa.string()))


@pytest.mark.parametrize(
    ("first", "dtype"),
    [("C0832840", np.int32), ("O000481624", np.int32), ("1234567890", np.int64)],
)
def test_numbers_of_up_to_nine_places_are_int32(first, dtype):
    """A leading constant counts as a 0 place, so "O" + 9 digits still fits int32."""
    pattern = digit_ids._Pattern.of_first([pa.array([first])])
    assert pattern.values == dtype
    top = first[0] + "9" * (len(first) - 1) if not first[0].isdigit() else "9" * len(first)
    _check(pa.array([top, top[:-1] + "0", None], pa.string()))  # the largest numbers
