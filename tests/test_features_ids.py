"""features.ids: exact, sorted factorization of string ids on every code path."""

from __future__ import annotations

import numpy as np
import pandas as pd
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
    col = pd.Series(pd.Categorical(["b", "a", None, "b"], categories=["b", "a", "z"]))
    (codes,), uniques = factorize(col)
    assert list(uniques) == ["a", "b", "z"]
    assert codes.tolist() == [1, 0, -1, 1]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(max_size=20)), max_size=40))
def test_any_strings(values):
    _check(pd.Series(values, dtype="str"))
    _check(pd.Series(values, dtype="str"), sort=False)


def test_large_input_partitions_and_collapses_runs(monkeypatch):
    """Partitioned hashing and run collapsing (used above ~2M rows) give the same codes."""
    monkeypatch.setattr(ids, "_PARTITION_MIN_ROWS", 64)
    monkeypatch.setattr(ids, "_COLLAPSE_MIN_ROWS", 64)
    rng = np.random.default_rng(3)
    for fmt in ("C{:07d}", "O{:09d}", "{}"):
        names = np.array([fmt.format(i) for i in range(500)], dtype=object)
        idx = np.sort(rng.integers(0, 500, 5000))  # long runs of equal ids
        idx[::5] = rng.integers(0, 500, len(idx[::5]))
        col = pd.Series(names[idx], dtype="str")
        col[::13] = None
        _check(col)
        _check(col, sort=False)


def test_hash_collision_falls_back_to_exact(monkeypatch):
    """If two different long ids ever hashed alike, the check catches it and stays exact."""
    monkeypatch.setattr(ids, "_MUL", np.uint64(0))  # every long id hashes to the same key
    _check(pd.Series(["abcdefghij", "abcdefghik", "abcdefghij"], dtype="str"))


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


def test_decimal_ids_of_ten_characters_use_a_direct_table(monkeypatch):
    """Issue 3: "O" + 9 digits left six padding bytes in the second word, which scaled
    every value by 10**6 and sent order ids to hashing; they now stay in a small range."""
    numbers = np.arange(0, 3_000_000, 7)
    values = pd.Series([f"O{n:09d}" for n in numbers[::-1]], dtype="str")
    monkeypatch.setattr(ids, "_Groups", None)  # hashing would fail loudly
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
