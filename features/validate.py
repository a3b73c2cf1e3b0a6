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


def _is_blank(s: pd.Series) -> np.ndarray:
    """True where a raw value is missing (null or empty / whitespace string)."""
    blank = s.isna().to_numpy().copy()
    if s.dtype == object or pd.api.types.is_string_dtype(s.dtype):
        stripped = s.astype("string").str.strip()
        blank |= (stripped == "").fillna(True).to_numpy(dtype=bool)
    return blank


def _convert(col: Column, raw: pd.Series) -> tuple[pd.Series, np.ndarray, str]:
    """Convert one raw column to its contract dtype; return values, failure mask, reason."""
    blank = _is_blank(raw)
    if col.kind == "timestamp":
        if pd.api.types.is_datetime64_any_dtype(raw.dtype):
            values = raw.dt.tz_localize("UTC") if raw.dt.tz is None else raw.dt.tz_convert("UTC")
        else:
            values = pd.to_datetime(
                raw.astype("string"), utc=True, errors="coerce", format="ISO8601"
            )
        bad = values.isna().to_numpy() & ~blank
        return values.astype("datetime64[us, UTC]"), bad, "unparsable timestamp"
    if col.kind in ("int", "float"):
        values = pd.to_numeric(raw, errors="coerce").astype("float64")
        bad = values.isna().to_numpy() & ~blank
        if col.kind == "int":
            v = values.to_numpy()
            bad |= np.isfinite(v) & (v % 1 != 0)
            return values.astype("Int64"), bad, "not an integer"
        return values, bad, "not a number"
    if col.kind == "bool":
        if pd.api.types.is_bool_dtype(raw.dtype):
            return raw.astype("boolean"), np.zeros(len(raw), bool), ""
        text = raw.astype("string").str.strip().str.lower()
        values = pd.Series(pd.NA, index=raw.index, dtype="boolean")
        values[text.isin(_TRUE).fillna(False)] = True
        values[text.isin(_FALSE).fillna(False)] = False
        bad = values.isna().to_numpy() & ~blank
        return values, bad, "not a boolean (true/false, 1/0, yes/no)"
    if col.kind == "category":
        text = raw.astype("string").str.strip().str.lower()
        known = text.isin(col.allowed or ()).to_numpy(dtype=bool)
        categories = list(col.allowed or ())
        values = pd.Series(
            pd.Categorical(text.where(known), categories=categories), index=raw.index
        )
        bad = ~known & ~blank
        allowed = ", ".join(col.allowed or ())
        return values, bad, f"unknown value (allowed: {allowed})"
    # string
    values = raw.astype("string").str.strip()
    values = values.mask(values == "")
    return values.astype("str"), np.zeros(len(raw), bool), ""


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
