"""features.ids: exact, sorted factorization of string ids on both code paths (numbered
ids parsed from Arrow's buffers, any other ids through Arrow's dictionary encoding)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features import ids
from features.ids import factorize


def _check(*columns: pd.Series, sort: bool = True) -> None:
    codes, uniques = factorize(*columns, sort=sort)
    values = pd.concat(columns, ignore_index=True)
    expected = sorted(set(values.dropna()))
    assert sorted(uniques) == expected
    if sort:
        assert list(uniques) == expected
    for col, code in zip(columns, codes, strict=True):
        assert code.dtype == np.int32
        got = [None if c < 0 else uniques[c] for c in code]
        assert got == [None if pd.isna(v) else v for v in col]


@pytest.mark.parametrize(
    "values",
    [
        ["b", "a", "b", None, "ccc", ""],  # mixed widths under 8 bytes: exact key + length
        ["C0000001", "C0000002", "C0000001"],  # exactly 8 bytes: the word is the key
        ["abcdefghij", "x", "abcdefghij", "abcdefghik", None, "é", "ü"],  # hashed + checked
        ["a", "a\x00", "a"],  # a trailing NUL byte is a different id
        ["O000000001", "O000000002"] * 3,  # fixed width, two words
        [None, None],
        [],
    ],
)
def test_small_cases(values):
    _check(pd.Series(values, dtype="str"))


def test_several_columns_share_codes():
    _check(pd.Series(["C3", "C1", None], dtype="str"), pd.Series(["C1", "C2"], dtype="str"))


def test_categorical_uses_its_codes_sorted():
    """A categorical column's ids are the categories its rows use, as in a column of
    the same strings (issue 17: the live state's events come out as categoricals)."""
    col = pd.Series(pd.Categorical(["b", "a", None, "b"], categories=["b", "a", "z"]))
    (codes,), uniques = factorize(col)
    assert list(uniques) == ["a", "b"]
    assert codes.tolist() == [1, 0, -1, 1]
    assert factorize(col, sort=False, uniques=False)[0][0].tolist()[2] == -1


@settings(max_examples=60, deadline=None)
@given(
    first=st.lists(st.one_of(st.none(), st.sampled_from(["C01", "C02", "C10", "x", "é"]))),
    second=st.lists(st.one_of(st.none(), st.sampled_from(["C02", "C03", "x"]))),
    unused=st.lists(st.sampled_from(["C99", "zz", "C00"]), unique=True),
)
def test_categorical_columns_share_codes_with_strings(first, second, unused):
    """Categorical and string columns together give what the same strings give."""
    categories = sorted({v for v in first if v is not None} | set(unused), reverse=True)
    as_categories = pd.Series(pd.Categorical(first, categories=categories))
    strings = pd.Series(second, dtype="str")
    codes, uniques = factorize(as_categories, strings)
    expected_codes, expected = factorize(pd.Series(first, dtype="str"), strings)
    assert list(uniques) == list(expected)
    for got, want in zip(codes, expected_codes, strict=True):
        assert got.dtype == np.int32
        assert got.tolist() == want.tolist()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(max_size=20)), max_size=40))
def test_any_strings(values):
    _check(pd.Series(values, dtype="str"))
    _check(pd.Series(values, dtype="str"), sort=False)


def test_large_input_with_runs_and_nulls():
    """Many rows, long runs of equal ids and nulls, on both paths."""
    rng = np.random.default_rng(3)
    for fmt in ("C{:07d}", "O{:09d}", "{}", "id-{}-x"):
        names = np.array([fmt.format(i) for i in range(500)], dtype=object)
        idx = np.sort(rng.integers(0, 500, 5000))  # long runs of equal ids
        idx[::5] = rng.integers(0, 500, len(idx[::5]))
        col = pd.Series(names[idx], dtype="str")
        col[::13] = None
        _check(col)
        _check(col, sort=False)


@pytest.mark.parametrize(
    "values",
    [
        ["C+12", "C012", "C 12", "C-12"],  # a sign or space is not a digit: never merged
        ["C012", "C12", "C0012"],  # digits of different widths: not one number each
        ["C012", "D012"],  # another prefix
        ["0042", "\u0664\u0662\u0661\u0660"],  # non-ASCII digits
        ["1234567890123456789", "0000000000000000001"],  # 19 digits: beyond int64
        ["\u00c9T\u00c901", "\u00c9T\u00c902", "\u00c9T\u00c901"],  # a multi-byte prefix
    ],
)
def test_ids_that_only_look_numbered_stay_exact(values):
    """Issue 15: the numbered path parses ids from their bytes; anything but one prefix
    and ASCII digits of one width takes the exact general path."""
    _check(pd.Series(values, dtype="str"))


def test_sliced_and_chunked_arrow_input():
    arr = pa.chunked_array([["x", "yy"], ["x", None, "zzzzzzzzzz"]])
    (codes,), uniques = factorize(arr.slice(1))
    assert list(uniques) == ["x", "yy", "zzzzzzzzzz"]
    assert codes.tolist() == [1, 0, -1, 2]


@pytest.mark.parametrize(
    "values",
    [
        ["C0000007", "C0000123", "C0000007", None, "C0999999"],  # prefix + digits, 8 bytes
        ["O000000001", "O999999999", "O000000001"],  # 10 bytes: two words, hashed values
        ["S12", "S07", "S99"],
        ["0042", "9999", "0000"],
        ["A1", "B1"],  # a varying letter: not decimal, hashed path
        ["1234567890123456", "0000000000000001"],  # 16 digits: the largest decimal ids
    ],
)
def test_decimal_ids(values):
    _check(pd.Series(values, dtype="str"))


def test_decimal_columns_with_different_constant_characters_share_codes():
    """'C00001' is constant in one column and not in the other: still one numbering."""
    events = pd.Series(["C00001", "C00001", "C00002"], dtype="str")
    table = pd.Series(["C10000", "C00002", "C00003"], dtype="str")
    _check(events, table)
    _check(events, pd.Series(["X00001"], dtype="str"))  # another constant letter: hashed


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 10**6), min_size=1, max_size=40), st.sampled_from(["C", "", "ID-"]))
def test_any_decimal_ids(numbers, prefix):
    _check(pd.Series([f"{prefix}{n:07d}" for n in numbers], dtype="str"))


@pytest.mark.parametrize(
    "values",
    [
        ["12345678X", "12345679X", "00000001X"],  # a constant last character
        ["0000000142", "0000000742", "0000000042"],  # constant last digits of a second word
        ["000000011234567X", "000000021234567X"],  # 16 bytes, last word mostly constant
    ],
)
def test_decimal_ids_with_constant_trailing_characters(values):
    _check(pd.Series(values, dtype="str"))


def test_numbered_ids_need_no_hash_table(monkeypatch):
    """Issue 3 / 15: "O" + 9 digits are numbered through a presence table, never hashed."""
    numbers = np.arange(0, 3_000_000, 7)
    values = pd.Series([f"O{n:09d}" for n in numbers[::-1]], dtype="str")
    monkeypatch.setattr(ids, "_dictionary_encoded", None)  # hashing would fail loudly
    (codes,), uniques = factorize(values)
    assert codes.tolist() == list(range(len(numbers)))[::-1]
    assert uniques[0] == "O000000000" and uniques[-1] == f"O{numbers[-1]:09d}"


@pytest.mark.parametrize(
    "chunks",
    [
        [["C0000001", None], ["C0000003", "C0000001"], [], [None]],  # decimal, nulls per chunk
        [["ab", None, "b"], ["abcdefghijk", "ab"], ["x" * 20]],  # chunks of different widths
        [["a"] * 3, ["b", "a"]],  # no nulls at all
    ],
)
def test_chunked_columns_are_read_chunk_by_chunk(chunks):
    """Chunks of a Parquet-read column are not combined into one copy (issue 3)."""
    arr = pa.chunked_array(chunks, pa.string())
    (codes,), uniques = factorize(arr)
    flat = [v for chunk in chunks for v in chunk]
    assert list(uniques) == sorted({v for v in flat if v is not None})
    assert [None if c < 0 else uniques[c] for c in codes] == flat


def test_numbered_ids_in_sliced_chunks_and_null_slots_that_keep_bytes():
    """Issue 15: ids are read from Arrow's buffers, so a slice's offset and a null entry
    that still spans bytes (Arrow allows it) must not shift or merge an id."""
    offsets = np.array([0, 3, 6, 9, 12], dtype=np.int32)
    data = pa.py_buffer(b"C07C99C02C07")
    arr = pa.StringArray.from_buffers(4, pa.py_buffer(offsets), data, pa.py_buffer(bytes([0b1101])))
    (codes,), uniques = factorize(arr)  # "C99" is null: its bytes are not an id
    assert list(uniques) == ["C02", "C07"]
    assert codes.tolist() == [1, -1, 0, 1]
    (codes,), uniques = factorize(
        pa.chunked_array([pa.array(["C05", "C01", None, "C03"])]).slice(1)
    )
    assert list(uniques) == ["C01", "C03"]
    assert codes.tolist() == [0, -1, 1]


def test_a_hash_collision_falls_back_to_the_exact_dictionary(monkeypatch):
    """Issue 15: other ids are grouped by a 64-bit hash and checked; if two different ids
    ever hashed alike (cannot be produced here, so the hash is made constant), the check
    catches it and Arrow's dictionary encoding gives the exact codes."""
    monkeypatch.setattr(
        pl.Series, "hash", lambda self, *a, **k: pl.Series(np.zeros(len(self), np.uint64))
    )
    values = pd.Series(["bb", "a", None, "bb", "ccc"], dtype="str")
    assert ids._hashed([ids._as_arrow(values)], sort=True) is None
    _check(values)


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(st.one_of(st.none(), st.sampled_from(["a", "b", "C01", "C02", ""]))),
    wanted=st.lists(st.one_of(st.none(), st.sampled_from(["a", "C01", "C02", "zz"]))),
)
def test_is_in_agrees_with_pandas_isin(values, wanted):
    """Issue 17: ``is_in`` (a hash lookup) answers what pandas' slow ``isin`` of Arrow
    strings answers, missing values and repeated wanted values included."""
    index = pd.Index(values, dtype="str")
    expected = index.isin(pd.Index(wanted, dtype="str")).tolist()
    assert ids.is_in(index, pd.Index(wanted, dtype="str")).tolist() == expected
    assert ids.is_in(pd.Series(values, dtype="str"), wanted).tolist() == expected
