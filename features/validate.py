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

from features.schema import EVENTS, IDENTIFIER_COLUMNS, Column, TableSchema

OnError = Literal["raise", "quarantine"]
MAX_LISTED_PROBLEMS = 10
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


def _convert(col: Column, raw: pd.Series) -> tuple[pd.Series, np.ndarray, str]:
    """Convert one raw column to its contract dtype; return values, failure mask, reason."""
    if col.kind == "category":
        values, bad = _to_category(raw, col.allowed or ())
        return values, bad, f"unknown value (allowed: {', '.join(col.allowed or ())})"
    if col.kind == "bool":
        values, bad = _to_bool(raw)
        return values, bad, "not a boolean (true/false, 1/0, yes/no)"
    blank = _is_blank(raw)
    if col.kind == "timestamp":
        if pd.api.types.is_datetime64_any_dtype(raw.dtype):
            values = raw.dt.tz_localize("UTC") if raw.dt.tz is None else raw.dt.tz_convert("UTC")
        else:
            text = _as_text(raw)
            values = pd.to_datetime(text, utc=True, errors="coerce", format="ISO8601")
        bad = values.isna().to_numpy() & ~blank
        return values.astype("datetime64[us, UTC]"), bad, "unparsable timestamp"
    if col.kind in ("int", "float"):
        if pd.api.types.is_numeric_dtype(raw.dtype) and not pd.api.types.is_bool_dtype(raw.dtype):
            values = raw.astype("float64")
        else:
            values = pd.to_numeric(_as_text(raw).mask(blank), errors="coerce").astype("float64")
        bad = values.isna().to_numpy() & ~blank
        if col.kind == "int":
            v = values.to_numpy()
            bad |= np.isfinite(v) & (v % 1 != 0)
            return values.astype("Int64"), bad, "not an integer"
        return values, bad, "not a number"
    # string
    values = _as_text(raw)
    empty = blank & values.notna().to_numpy()
    if empty.any():
        values = values.mask(empty)
    return values, np.zeros(len(raw), bool), ""


def validate_frame(
    raw: pd.DataFrame, table: TableSchema, file: str, on_error: OnError = "raise"
) -> ValidationResult:
    """Check ``raw`` against ``table`` and convert it to contract dtypes.

    Missing required columns are always an error (no row could be loaded). Row
    problems raise :class:`DataError` or, with ``on_error="quarantine"``, are returned
    in ``bad`` with columns ``_file``, ``_row``, ``_column``, ``_reason``.
    """
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
        values, bad, reason = _convert(col, raw[col.name])
        out[col.name] = values
        if bad.any():
            checks.append((bad, col.name, f"{reason}: got {{value}}"))
        if col.required:
            checks.append((_is_blank(raw[col.name]), col.name, "required value is empty"))

    if table is EVENTS:
        checks += _event_rules(out, n)
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
    bad = raw.iloc[rows].astype("string").copy()
    cols = [checks[i][1] for i in reason_idx[rows]]
    reasons = [
        checks[i][2].format(value=repr(_raw_value(raw, c, r)))
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


def _raw_value(raw: pd.DataFrame, column: str, row: int) -> object:
    value = raw[column].iat[row] if column in raw.columns else None
    return None if pd.isna(value) else value


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
