"""Validate raw tables against the contract, vectorised.

Every rejected row is named by file, row (1-based, header not counted) and column.
``on_error="raise"`` stops at the first bad file with a :class:`DataError`;
``on_error="quarantine"`` keeps the good rows and returns the bad ones with reasons.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa

from features.contract.schema import (
    EVENTS,
    IDENTIFIER_COLUMNS,
    MAX_ID_LENGTH,
    PRODUCTS,
    TIME_ZONE_COLUMNS,
    Column,
    TableSchema,
)
from features.cutoffs import to_utc

OnError = Literal["raise", "quarantine"]
MAX_LISTED_PROBLEMS = 10
MAX_SAFE_INTEGER = 2**53 - 1
"""Largest integer a float64 holds exactly; integer columns accept at most this magnitude."""
EARLIEST_TS = pd.Timestamp("1970-01-01", tz="UTC")
FUTURE_SLACK = pd.Timedelta(days=1)
_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f"}


@dataclass(frozen=True)
class Problem:
    """One bad value: where it is and what is wrong with it."""

    file: str
    row: int | None
    column: str | None
    reason: str

    def __str__(self) -> str:
        where = [self.file]
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.column is not None:
            where.append(f"column '{self.column}'")
        return f"{', '.join(where)}: {self.reason}"


class DataError(ValueError):
    """Input data breaks the contract. The message lists where and why."""

    def __init__(self, problems: list[Problem], total: int | None = None) -> None:
        self.problems = problems
        self.total = len(problems) if total is None else total
        shown = "\n".join(f"  - {p}" for p in problems[:MAX_LISTED_PROBLEMS])
        more = self.total - min(len(problems), MAX_LISTED_PROBLEMS)
        tail = f"\n  ... and {more} more bad rows" if more > 0 else ""
        noun = "problem" if self.total == 1 else "problems"
        super().__init__(f"{self.total} {noun} in input data:\n{shown}{tail}")


@dataclass(frozen=True)
class TimeRange:
    """The timestamps a load accepts, both ends included (`omni data load --ts-min/--ts-max`).

    By default 1970-01-01 to one day after the load's time: anything outside is a wrong
    clock or a placeholder date, and would land in a month partition of its own.
    """

    earliest: pd.Timestamp
    latest: pd.Timestamp

    @classmethod
    def default(cls, now: pd.Timestamp | None = None) -> TimeRange:
        now = pd.Timestamp.now(tz="UTC") if now is None else to_utc(now)
        return cls(EARLIEST_TS, (now + FUTURE_SLACK).ceil("s"))

    @classmethod
    def parse(cls, earliest: str | None, latest: str | None) -> TimeRange:
        """From the CLI's texts (None keeps the default end); a bad date is a ValueError."""
        default = cls.default()
        bounds = []
        for flag, text, fallback in (
            ("--ts-min", earliest, default.earliest),
            ("--ts-max", latest, default.latest),
        ):
            value = fallback if text is None else pd.to_datetime(text, utc=True, errors="coerce")
            if pd.isna(value):
                raise ValueError(f"{flag} {text!r} is not a date or time (e.g. 2020-01-01)")
            bounds.append(value)
        if bounds[0] > bounds[1]:
            raise ValueError(f"--ts-min {bounds[0]} is after --ts-max {bounds[1]}")
        return cls(*bounds)


Check = tuple[np.ndarray, str]  # (bad-row mask, reason with a {value} placeholder)


@dataclass
class ValidationResult:
    """Good rows converted to contract dtypes, and bad rows with file/row/column/reason."""

    good: pd.DataFrame
    bad: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def n_bad(self) -> int:
        return len(self.bad)


def _as_text(s: pd.Series) -> pd.Series:
    """The column as pandas strings (no copy when it already is)."""
    return s if isinstance(s.dtype, pd.StringDtype) else s.astype("str")


def _is_blank(s: pd.Series) -> np.ndarray:
    """True where a raw value is missing (null or an empty string)."""
    blank = s.isna().to_numpy(dtype=bool).copy()
    if isinstance(s.dtype, pd.CategoricalDtype):
        empty_cats = np.asarray(s.cat.categories.astype(str).str.strip() == "")
        codes = s.cat.codes.to_numpy()
        blank |= (codes >= 0) & np.append(empty_cats, False)[codes]
    elif s.dtype == object or pd.api.types.is_string_dtype(s.dtype):
        blank |= (_as_text(s) == "").to_numpy(dtype=bool, na_value=False)
    return blank


def _codes_and_labels(raw: pd.Series) -> tuple[np.ndarray, pd.Index]:
    """Integer codes (-1 for null) and distinct values, cheap for low-cardinality columns."""
    if isinstance(raw.dtype, pd.CategoricalDtype):
        return raw.cat.codes.to_numpy().astype(np.int64), raw.cat.categories
    codes, uniques = pd.factorize(raw)
    return codes.astype(np.int64), pd.Index(uniques)


def _to_category(raw: pd.Series, allowed: tuple[str, ...]) -> tuple[pd.Series, np.ndarray]:
    """Map values (trimmed, any case) onto the fixed categories; flag unknown values."""
    codes, labels = _codes_and_labels(raw)
    norm = labels.astype(str).str.strip().str.lower()
    index = {v: i for i, v in enumerate(allowed)}
    lookup = np.array([index.get(v, -1) for v in norm] + [-1], dtype=np.int64)
    blank_label = np.append(np.asarray(norm == ""), True)
    new = lookup[codes]
    bad = (new < 0) & ~blank_label[codes]
    values = pd.Categorical.from_codes(np.maximum(new, -1), categories=list(allowed))
    return pd.Series(values, index=raw.index), bad


def _to_bool(raw: pd.Series) -> tuple[pd.Series, np.ndarray]:
    if pd.api.types.is_bool_dtype(raw.dtype):
        return raw.astype("boolean"), np.zeros(len(raw), bool)
    codes, labels = _codes_and_labels(raw)
    norm = labels.astype(str).str.strip().str.lower()
    truth = np.array([True if v in _TRUE else False if v in _FALSE else None for v in norm])
    known = np.append([v in _TRUE or v in _FALSE for v in norm], False)
    values = pd.array(np.append(truth, None)[codes], dtype="boolean")
    blank_label = np.append(np.asarray(norm == ""), True)
    return pd.Series(values, index=raw.index), ~known[codes] & ~blank_label[codes]


def _convert(col: Column, raw: pd.Series, times: TimeRange) -> tuple[pd.Series, list[Check]]:
    """Convert one raw column to its contract dtype; return the values and its row checks.

    Values failing a check are left missing in the result, so the conversion never fails.
    """
    if col.kind == "category":
        values, bad = _to_category(raw, col.allowed or ())
        return values, [(bad, f"unknown value (allowed: {', '.join(col.allowed or ())})")]
    if col.kind == "bool":
        values, bad = _to_bool(raw)
        return values, [(bad, "not a boolean (true/false, 1/0, yes/no)")]
    blank = _is_blank(raw)
    if col.kind == "timestamp":
        return _to_timestamp(raw, blank, times)
    if col.kind in ("int", "float"):
        return _to_number(raw, blank, integer=col.kind == "int")
    values = _as_text(raw)
    empty = blank & values.notna().to_numpy()
    if empty.any():
        values = values.mask(empty)
    if col.name in TIME_ZONE_COLUMNS:
        return values, [(_unknown_zones(values), "unknown time zone (e.g. Europe/London)")]
    return values, _id_checks(values) if col.is_id else []


def _unknown_zones(values: pd.Series) -> np.ndarray:
    """bool per row: a value that is not an IANA time zone name (checked once per
    distinct value)."""
    from zoneinfo import available_timezones

    known = available_timezones()
    distinct = pd.unique(values.dropna())
    bad = {v for v in distinct if v not in known}
    return values.isin(bad).to_numpy() if bad else np.zeros(len(values), bool)


def _to_timestamp(
    raw: pd.Series, blank: np.ndarray, times: TimeRange
) -> tuple[pd.Series, list[Check]]:
    if pd.api.types.is_datetime64_any_dtype(raw.dtype):
        values = raw.dt.tz_localize("UTC") if raw.dt.tz is None else raw.dt.tz_convert("UTC")
    else:
        text = _as_text(raw)
        values = pd.to_datetime(text, utc=True, errors="coerce", format="ISO8601")
    values = values.astype("datetime64[us, UTC]")
    unparsable = values.isna().to_numpy() & ~blank
    early = (values < times.earliest).to_numpy(dtype=bool, na_value=False)
    late = (values > times.latest).to_numpy(dtype=bool, na_value=False)
    if early.any() or late.any():
        values = values.mask(early | late)
    return values, [
        (unparsable, "unparsable timestamp"),
        (early, f"timestamp before {_when(times.earliest)} (--ts-min allows earlier ones)"),
        (late, f"timestamp after {_when(times.latest)} (--ts-max allows later ones)"),
    ]


def _when(t: pd.Timestamp) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S UTC")


def _to_number(raw: pd.Series, blank: np.ndarray, integer: bool) -> tuple[pd.Series, list[Check]]:
    """Numbers as float64 (Int64 for integers); non-finite, fractional or huge ones are bad."""
    if pd.api.types.is_numeric_dtype(raw.dtype) and not pd.api.types.is_bool_dtype(raw.dtype):
        values = raw.astype("float64")
    else:
        values = pd.to_numeric(_as_text(raw).mask(blank), errors="coerce").astype("float64")
    v = values.to_numpy()
    missing = np.isnan(v)
    not_number = missing & ~blank
    infinite = np.isinf(v)
    checks = [
        (not_number, "not an integer" if integer else "not a number"),
        (infinite, "not a finite number"),
    ]
    bad = not_number | infinite
    if integer:
        with np.errstate(invalid="ignore"):
            huge = ~infinite & (np.abs(v) > MAX_SAFE_INTEGER)
            fraction = ~infinite & ~huge & (v % 1 != 0) & ~missing
        checks += [
            (huge, f"integer out of range (at most {MAX_SAFE_INTEGER:,} either side of 0)"),
            (fraction, "not an integer"),
        ]
        bad |= huge | fraction
    if bad.any():
        values = values.mask(bad)
    return (values.astype("Int64") if integer else values), checks


def _id_checks(values: pd.Series) -> list[Check]:
    """Ids the service would refuse: longer than MAX_ID_LENGTH characters, or holding NUL.

    A character is at least one byte, so the rows are looked at only when the longest
    value in bytes exceeds the limit, or a NUL byte occurs at all (both read off the
    Arrow buffers at memory speed).
    """
    longest, has_nul = _byte_stats(values)
    none = np.zeros(len(values), bool)
    too_long = none
    if longest > MAX_ID_LENGTH:
        too_long = (values.str.len() > MAX_ID_LENGTH).to_numpy(dtype=bool, na_value=False)
    nul = none
    if has_nul:
        nul = values.str.contains("\x00", regex=False).to_numpy(dtype=bool, na_value=False)
    return [
        (too_long, f"id longer than {MAX_ID_LENGTH} characters (the service refuses it)"),
        (nul, "id contains a NUL character"),
    ]


def _byte_stats(values: pd.Series) -> tuple[int, bool]:
    """The longest value in UTF-8 bytes, and whether any NUL byte may occur."""
    arrow = pa.array(values.array)  # no copy for pandas' Arrow-backed strings
    longest, has_nul = 0, False
    for chunk in arrow.chunks if isinstance(arrow, pa.ChunkedArray) else [arrow]:
        if not len(chunk):
            continue
        if not (pa.types.is_string(chunk.type) or pa.types.is_large_string(chunk.type)):
            chunk = chunk.cast(pa.large_string())
        _, offsets_buf, data_buf = chunk.buffers()
        wide = pa.types.is_large_string(chunk.type)
        offsets = np.frombuffer(offsets_buf, np.int64 if wide else np.int32)
        offsets = offsets[chunk.offset : chunk.offset + len(chunk) + 1]
        longest = max(longest, int(np.diff(offsets).max()))
        if data_buf is not None and data_buf.size:
            has_nul |= bool(np.frombuffer(data_buf, np.uint8).min() == 0)
    return longest, has_nul


def _not_single_values(raw: pd.Series) -> Check | None:
    """Rows holding a list, map, struct or bytes instead of one value (Parquet nested types).

    Only object columns can hold them (pandas reads Arrow text, numbers and times into
    typed columns), so the check costs nothing on ordinary columns.
    """
    if raw.dtype != object:
        return None
    try:
        arrow_type = pa.array(raw, from_pandas=True).type
    except (pa.ArrowException, OverflowError):  # not from a file's column, only a frame
        reason = (
            "values of mixed kinds, or integers over 64 bits, in this column; "
            "expected one value per row"
        )
    else:
        if pa.types.is_struct(arrow_type):
            reason = "a struct, not a single value"
        elif pa.types.is_nested(arrow_type):
            reason = "a list or map, not a single value"
        elif pa.types.is_binary(arrow_type) or pa.types.is_large_binary(arrow_type):
            reason = "binary data, not text (not valid UTF-8)"
        elif pa.types.is_fixed_size_binary(arrow_type):
            reason = "binary data, not text"
        else:
            return None
    return raw.notna().to_numpy(dtype=bool), reason


def check_value(
    table: TableSchema, column: str, value: str, times: TimeRange | None = None
) -> str | None:
    """Why the contract refuses ``value`` in ``table.column`` as one value on its own
    (allowed values, type, time range, id rules), or None when it accepts it. Used for
    ``--set`` constants before any file is read."""
    col = table.column(column)
    raw = pd.Series(pd.Categorical([value]))  # as `--set` adds it to a file's rows
    _, checks = _convert(col, raw, TimeRange.default() if times is None else times)
    if col.required:
        checks.append((_is_blank(raw), "required value is empty"))
    return next((why for bad, why in checks if bad[0]), None)


def validate_frame(
    raw: pd.DataFrame,
    table: TableSchema,
    file: str,
    on_error: OnError = "raise",
    times: TimeRange | None = None,
) -> ValidationResult:
    """Check ``raw`` against ``table`` and convert it to contract dtypes.

    Missing required columns are always an error (no row could be loaded). Row
    problems raise :class:`DataError` or, with ``on_error="quarantine"``, are returned
    in ``bad`` with columns ``_file``, ``_row``, ``_column``, ``_reason``. Timestamps
    outside ``times`` (default :meth:`TimeRange.default`) are bad rows.
    """
    times = TimeRange.default() if times is None else times
    missing = [c for c in table.required if c not in raw.columns]
    if table is EVENTS and not ({"customer_id", *IDENTIFIER_COLUMNS} & set(raw.columns)):
        missing.append(
            "customer_id (or an identifier column: " + ", ".join(IDENTIFIER_COLUMNS) + ")"
        )
    if missing:
        found = ", ".join(map(str, raw.columns)) or "none"
        problems = [
            Problem(file, None, m, f"required column missing (columns found: {found})")
            for m in missing
        ]
        raise DataError(problems)

    raw = raw.reset_index(drop=True)
    n = len(raw)
    out: dict[str, pd.Series] = {}
    checks: list[tuple[np.ndarray, str, str]] = []  # (bad mask, column, reason)
    for col in table.columns:
        if col.name not in raw.columns:
            continue
        column = raw[col.name]
        nested = _not_single_values(column)
        if nested is not None and nested[0].any():
            checks.append((nested[0], col.name, f"{nested[1]}: got {{value}}"))
            column = column.mask(nested[0])
        values, column_checks = _convert(col, column, times)
        out[col.name] = values
        checks += [
            (bad, col.name, f"{why}: got {{value}}") for bad, why in column_checks if bad.any()
        ]
        if col.required:
            checks.append((_is_blank(column), col.name, "required value is empty"))

    if table is EVENTS:
        checks += _event_rules(out, n)
    if table is PRODUCTS and "price" in out:
        negative = (out["price"] < 0).to_numpy(dtype=bool, na_value=False)
        checks.append((negative, "price", "negative price: got {value}"))
    if table.key is not None:
        key = out[table.key]
        dup = key.duplicated(keep=False).to_numpy() & key.notna().to_numpy()
        checks.append((dup, table.key, "duplicate id {value} (every row with it is rejected)"))

    good = pd.DataFrame(out)
    bad_mask = np.zeros(n, bool)
    for mask, _, _ in checks:
        bad_mask |= mask
    if not bad_mask.any():
        return ValidationResult(good=good)

    # The first failing check of each bad row names its reason.
    reason_idx = np.full(n, -1)
    for i in range(len(checks) - 1, -1, -1):
        reason_idx[checks[i][0]] = i
    rows = np.flatnonzero(bad_mask)
    bad = _report_frame(raw.iloc[rows])
    cols = [checks[i][1] for i in reason_idx[rows]]
    reasons = [
        checks[i][2].format(value=show_value(_raw_value(raw, c, r)))
        for i, c, r in zip(reason_idx[rows], cols, rows, strict=True)
    ]
    bad.insert(0, "_reason", reasons)
    bad.insert(0, "_column", cols)
    bad.insert(0, "_row", rows + 1)
    bad.insert(0, "_file", file)
    if on_error == "raise":
        problems = [
            Problem(file, int(r), c, reason)
            for r, c, reason in zip(bad["_row"][:MAX_LISTED_PROBLEMS], cols, reasons, strict=False)
        ]
        raise DataError(problems, total=len(rows))
    return ValidationResult(
        good=good[~bad_mask].reset_index(drop=True), bad=bad.reset_index(drop=True)
    )


def _report_frame(rows: pd.DataFrame) -> pd.DataFrame:
    """Bad rows as text, as they were in the file, for the error report and quarantine."""
    out = {}
    for name, values in rows.items():
        if values.dtype == object:  # lists, structs, bytes from Parquet: show them as Python does
            values = values.map(_value_text, na_action="ignore")
        out[name] = values.astype("string")
    return pd.DataFrame(out, index=rows.index)


def _value_text(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, np.ndarray):
        return repr(value.tolist())
    return repr(value)


def _raw_value(raw: pd.DataFrame, column: str, row: int) -> object:
    value = raw[column].iat[row] if column in raw.columns else None
    if isinstance(value, np.ndarray):  # a list from a Parquet list column
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return None if pd.api.types.is_scalar(value) and pd.isna(value) else value


def show_value(value: object, limit: int = 60) -> str:
    """A value as messages show it: its repr, cut short when long."""
    if isinstance(value, str) and len(value) > limit:
        return f"{value[:limit]!r}... ({len(value):,} characters)"
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


def _event_rules(out: dict[str, pd.Series], n: int) -> list[tuple[np.ndarray, str, str]]:
    """Row rules of the events table beyond single-column types."""
    checks: list[tuple[np.ndarray, str, str]] = []
    id_cols = [c for c in ("customer_id", *IDENTIFIER_COLUMNS) if c in out]
    has_id = np.zeros(n, bool)
    for c in id_cols:
        has_id |= out[c].notna().to_numpy()
    checks.append(
        (~has_id, id_cols[0], "no customer_id and no identifier (" + ", ".join(id_cols) + ")")
    )
    if "quantity" in out and "event_type" in out:
        qty = out["quantity"].astype("float64").to_numpy()
        purchase = (out["event_type"] == "purchase").to_numpy()
        neg = purchase & (np.nan_to_num(qty, nan=0.0) < 0)
        checks.append((neg, "quantity", "negative quantity on a purchase: got {value}"))
    return checks
