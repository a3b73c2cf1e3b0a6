"""Stable event ids: what makes loading the same event twice add it once.

A source may give each event an ``event_id``. Where it does not, the id is derived
from the row itself: a hash of its contract columns (as given, before identity
resolution) and of the occurrence number of identical rows in the batch, written as 16
characters (96 bits, base64url). So two genuinely identical lines in one file stay two
events, while appending the same file again adds nothing. Anything that takes in events
(a file load, a live endpoint) calls :func:`assign_event_ids` and gets the same ids for
the same rows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from features.contract.schema import EVENTS

# Frozen: derived ids are stored, so changing this list (or the hashing below) would
# give already-loaded events new ids and let them load twice. A column added to the
# contract later stays out of it.
HASHED_COLUMNS: tuple[str, ...] = (
    "customer_id",
    "ts",
    "channel",
    "event_type",
    "order_id",
    "product_id",
    "store_id",
    "quantity",
    "amount",
    "discount",
    "campaign_id",
    "email_hash",
    "loyalty_id",
    "device_id",
    "phone_hash",
)
_HASH_KEYS = ("omni-event-id-k1", "omni-event-id-k2")  # two 64-bit hashes: 128 bits
_NAN_BITS = np.array(np.nan, dtype=np.float64).view(np.uint64)
_NULL = np.uint64(2**64 - 1)  # the hash of a missing text value
_BASE64URL = np.frombuffer(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", dtype=np.uint8
)
ID_LENGTH = 16  # characters of a derived id: 96 bits, so a collision among even a billion
# events has a chance of about 1e-11 (and would skip one event as already loaded)


def _text_hashes(col: pd.Series | None, n: int) -> list[np.ndarray]:
    """One uint64 per row and hash key: pandas' keyed hash of the text (null: a fixed
    value), computed once per distinct value. Text and categorical columns agree."""
    if col is None:
        return [np.full(n, _NULL, np.uint64) for _ in _HASH_KEYS]
    text = col.astype("str") if not isinstance(col.dtype, pd.CategoricalDtype) else col
    codes, uniques = pd.factorize(text)
    values = np.asarray(uniques, dtype=object)
    out = []
    for key in _HASH_KEYS:
        hashed = np.append(pd.util.hash_array(values, hash_key=key, categorize=False), _NULL)
        out.append(hashed[codes])  # code -1 (null) takes the last entry
    return out


def _number_bits(col: pd.Series | None, n: int) -> np.ndarray:
    """A float64's bits, with one NaN for null and no negative zero."""
    values = (
        np.full(n, np.nan)
        if col is None
        else pd.to_numeric(col).to_numpy("float64", na_value=np.nan)
    )
    bits = (values + 0.0).view(np.uint64).copy()  # + 0.0 turns -0.0 into 0.0
    bits[np.isnan(values)] = _NAN_BITS
    return bits


def _canonical(events: pd.DataFrame) -> list[list[np.ndarray]]:
    """The hashed columns in one fixed representation whatever dtypes the source had, as
    uint64 columns: text by its keyed hash (one list per hash key), timestamps as UTC
    microseconds, numbers as float64 bits. A column the source does not have is all null.
    """
    n = len(events)
    frames: list[list[np.ndarray]] = [[] for _ in _HASH_KEYS]
    for name in HASHED_COLUMNS:
        kind = EVENTS.column(name).kind
        col = events[name] if name in events.columns else None
        if kind == "timestamp":
            ts = pd.DatetimeIndex(pd.to_datetime(col, utc=True)).as_unit("us")
            same = [ts.asi8.view(np.uint64)] * len(_HASH_KEYS)
        elif kind in ("int", "float"):
            same = [_number_bits(col, n)] * len(_HASH_KEYS)
        else:
            same = _text_hashes(col, n)
        for frame, values in zip(frames, same, strict=True):
            frame.append(values)
    return frames


def _hash64(columns: list[np.ndarray]) -> np.ndarray:
    """One uint64 per row of uint64 columns: each mixed by ``pandas.util.hash_array`` and
    combined as CPython hashes a tuple (the values ``hash_pandas_object`` gives for a
    frame of these columns, without building one)."""
    out = np.full(len(columns[0]), 0x345678, np.uint64)
    mult = np.uint64(1000003)
    for i, col in enumerate(columns):
        out ^= pd.util.hash_array(col)
        out *= mult
        mult += np.uint64(82520 + 2 * (len(columns) - i))
    return out + np.uint64(97531)


def _text(high: np.ndarray, low: np.ndarray) -> pd.Series:
    """The top 96 bits of each (high, low) pair as 16 base64url characters (pandas text),
    without a loop over rows: the same text as ``base64.urlsafe_b64encode`` of 12 bytes."""
    u = np.uint64
    # 96 bits are 16 groups of 6: 60 bits of ``high``, then its last 4 with 32 of ``low``.
    first, second = high >> u(4), ((high & u(0xF)) << u(32)) | (low >> u(32))
    sixes = np.empty((len(high), ID_LENGTH), np.uint8)
    for k in range(10):
        sixes[:, k] = (first >> u(6 * (9 - k))) & u(63)
    for k in range(6):
        sixes[:, 10 + k] = (second >> u(6 * (5 - k))) & u(63)
    chars = pa.py_buffer(np.ascontiguousarray(_BASE64URL[sixes]))
    fixed = pa.FixedSizeBinaryArray.from_buffers(pa.binary(ID_LENGTH), len(high), [None, chars])
    text = fixed.cast(pa.binary()).cast(pa.string())
    return pd.Series(
        text.to_pandas(types_mapper={pa.string(): pd.StringDtype(na_value=np.nan)}.get)
    )


def _occurrence(h1: np.ndarray, h2: np.ndarray) -> np.ndarray:
    """0 for the first of identical rows, 1 for the second, ... (in row order)."""
    out = np.zeros(len(h1), np.uint64)
    maybe = pd.Series(h1).duplicated(keep=False).to_numpy()
    if maybe.any():  # exact count on the 128-bit pair, only where the first half repeats
        pairs = pd.DataFrame({"a": h1[maybe], "b": h2[maybe]})
        out[maybe] = pairs.groupby(["a", "b"], sort=False).cumcount().to_numpy(np.uint64)
    return out


def derive_event_ids(events: pd.DataFrame) -> pd.Series:
    """An id for every row from its contract columns and its occurrence among identical rows."""
    if not len(events):
        return pd.Series([], index=events.index, dtype="str", name="event_id")
    # Text hashes with two keys, numbers through a bijective mix: the halves differ through
    # the text columns and neither adds collisions of its own.
    h1, h2 = (_hash64(columns) for columns in _canonical(events))
    n = _occurrence(h1, h2)
    high, low = _hash64([h1, n]), _hash64([h2, n])
    return _text(high, low).set_axis(events.index).rename("event_id")


def assign_event_ids(events: pd.DataFrame) -> pd.DataFrame:
    """``events`` with ``event_id`` filled: the source's where given, derived elsewhere.
    (Nothing is derived when every row has one: the live endpoint's clients mostly send
    them, and deriving costs about 10 ms of a batch's fixed overhead.)"""
    out = events.copy(deep=False)
    if "event_id" in events.columns:
        given = events["event_id"].astype("str")
        if given.notna().all():
            out["event_id"] = given
            return out
        derived = derive_event_ids(events)  # over every row: the occurrence numbers count
        out["event_id"] = given.where(given.notna(), derived).astype("str")  # them all
    else:
        out["event_id"] = derive_event_ids(events)
    return out
