"""Load a user's own Parquet / CSV files into contract tables, with column mapping.

A source is a folder holding ``events``, ``customers``, ``products``, ``stores`` as
``.parquet``, ``.csv`` or ``.csv.gz`` (or a folder of Parquet parts per table), or an
explicit ``{table: path}`` mapping. ``column_map`` renames the user's columns:
``{"events": {"ts": "event_time"}}`` reads the contract column ``ts`` from ``event_time``.
"""

from __future__ import annotations

import csv
import gzip
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from features.schema import TABLES, empty_frame
from features.sources import SourceData
from features.validate import DataError, OnError, Problem, validate_frame

SUFFIXES = (".parquet", ".csv", ".csv.gz")
ColumnMap = Mapping[str, Mapping[str, str]]


@dataclass
class LoadResult:
    """Validated tables, plus quarantined rows per table (empty unless quarantining)."""

    data: SourceData
    quarantined: dict[str, pd.DataFrame] = field(default_factory=dict)
    ignored_columns: dict[str, list[str]] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def n_quarantined(self) -> int:
        return sum(len(df) for df in self.quarantined.values())


def find_table_files(source: Path | str | Mapping[str, Path | str]) -> dict[str, Path]:
    """Locate each contract table's file in a folder (or check an explicit mapping)."""
    if isinstance(source, Mapping):
        files = {t: Path(p) for t, p in source.items()}
        unknown = sorted(set(files) - set(TABLES))
        if unknown:
            raise DataError(
                [Problem(str(files[u]), None, None, f"unknown table {u!r}") for u in unknown]
            )
    else:
        folder = Path(source)
        if not folder.exists():
            raise DataError([Problem(str(folder), None, None, "no such file or folder")])
        if folder.is_file():
            raise DataError(
                [
                    Problem(
                        str(folder),
                        None,
                        None,
                        "a single file needs its table named (e.g. --table events=PATH)",
                    )
                ]
            )
        files = {}
        for table in TABLES:
            for suffix in SUFFIXES:
                if (folder / f"{table}{suffix}").exists():
                    files[table] = folder / f"{table}{suffix}"
                    break
            else:
                if (folder / table).is_dir():
                    files[table] = folder / table
    if "events" not in files:
        where = source if not isinstance(source, Mapping) else "the given files"
        raise DataError(
            [Problem(str(where), None, None, "no events table (events.parquet / events.csv)")]
        )
    for table, path in files.items():
        if not path.exists():
            raise DataError([Problem(str(path), None, None, f"{table} file does not exist")])
    return files


def read_raw(path: Path, dictionary_columns: frozenset[str] = frozenset()) -> pd.DataFrame:
    """Read a Parquet file/folder as typed, or a CSV with every column as text.

    CSV values stay text so that validation, not the reader, decides what is bad and
    can name the row; ``dictionary_columns`` (low-cardinality, e.g. channel) are read
    dictionary-encoded, which makes validating them nearly free.
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    name = path.name.lower()
    try:
        if path.is_dir() or name.endswith(".parquet"):
            return pq.read_table(path).to_pandas()
        if name.endswith(".csv") or name.endswith(".csv.gz"):
            opener = gzip.open if name.endswith(".gz") else open
            with opener(path, "rt", newline="") as fh:
                header = next(csv.reader(fh), [])
            if not header:
                return pd.DataFrame()
            convert = pacsv.ConvertOptions(
                column_types={
                    h: pa.dictionary(pa.int32(), pa.string())
                    if h in dictionary_columns
                    else pa.string()
                    for h in header
                },
                strings_can_be_null=True,
                null_values=[""],
            )
            return pacsv.read_csv(path, convert_options=convert).to_pandas()
    except (OSError, pa.ArrowInvalid) as exc:
        raise DataError([Problem(str(path), None, None, f"cannot read file: {exc}")]) from exc
    raise DataError([Problem(str(path), None, None, "unsupported file type (.parquet, .csv)")])


def apply_column_map(
    raw: pd.DataFrame, table: str, mapping: Mapping[str, str], file: str
) -> pd.DataFrame:
    """Rename user columns to contract names: ``mapping`` is ``{contract_name: user_name}``."""
    schema = TABLES[table]
    problems = []
    for contract_name, user_name in mapping.items():
        if contract_name not in schema.names:
            problems.append(
                Problem(
                    file,
                    None,
                    user_name,
                    f"--map target {table}.{contract_name} is not a "
                    f"contract column (have: {', '.join(schema.names)})",
                )
            )
        elif user_name not in raw.columns:
            found = ", ".join(map(str, raw.columns))
            problems.append(
                Problem(
                    file,
                    None,
                    user_name,
                    f"mapped column for {table}.{contract_name} not found (columns found: {found})",
                )
            )
    if problems:
        raise DataError(problems)
    renamed = raw.rename(columns={u: c for c, u in mapping.items()})
    # A user column already carrying a contract name that is mapped from elsewhere is dropped.
    return renamed.loc[:, ~renamed.columns.duplicated(keep="last")]


def parse_column_map(items: list[str]) -> dict[str, dict[str, str]]:
    """Parse ``TABLE.COLUMN=SOURCE_COLUMN`` strings (the CLI's ``--map``)."""
    out: dict[str, dict[str, str]] = {}
    for item in items:
        target, sep, source = item.partition("=")
        table, dot, column = target.partition(".")
        if not sep or not dot or not source or table not in TABLES:
            raise ValueError(
                f"--map {item!r}: expected TABLE.COLUMN=SOURCE_COLUMN with TABLE one of "
                f"{', '.join(TABLES)} (e.g. events.ts=event_time)"
            )
        out.setdefault(table, {})[column] = source
    return out


def load_files(
    source: Path | str | Mapping[str, Path | str],
    column_map: ColumnMap | None = None,
    on_error: OnError = "raise",
) -> LoadResult:
    """Read, map and validate a source's tables. Missing dimension tables load empty."""
    files = find_table_files(source)
    column_map = column_map or {}
    tables: dict[str, pd.DataFrame] = {}
    result = LoadResult(data=None, files=files)  # type: ignore[arg-type]
    for table in TABLES:
        if table not in files:
            tables[table] = empty_frame(TABLES[table])
            continue
        path = files[table]
        mapping = column_map.get(table, {})
        categorical = frozenset(
            mapping.get(c.name, c.name) for c in TABLES[table].columns if c.kind == "category"
        )
        raw = apply_column_map(read_raw(path, categorical), table, mapping, str(path))
        extra = [c for c in raw.columns if c not in TABLES[table].names]
        if extra:
            result.ignored_columns[table] = extra
        checked = validate_frame(raw, TABLES[table], str(path), on_error=on_error)
        tables[table] = checked.good
        if checked.n_bad:
            result.quarantined[table] = checked.bad
    result.data = SourceData(name=str(source), **tables)
    return result
