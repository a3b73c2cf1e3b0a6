"""Load a user's own Parquet / CSV files into contract tables, with column mapping.

A source is a folder holding ``events``, ``customers``, ``products``, ``stores`` as
``.parquet``, ``.csv`` or ``.csv.gz`` (or a folder of Parquet parts per table), or an
explicit ``{table: path}`` mapping. ``column_map`` renames the user's columns:
``{"events": {"ts": "event_time"}}`` reads the contract column ``ts`` from ``event_time``.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import numpy as np
import pandas as pd

from features.contract.schema import TABLES, empty_frame
from features.contract.validate import (
    DataError,
    OnError,
    Problem,
    TimeRange,
    check_value,
    show_value,
    validate_frame,
)
from features.sources.base import SourceData

if TYPE_CHECKING:
    import pyarrow as pa

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


def read_raw(
    path: Path,
    dictionary_columns: frozenset[str] = frozenset(),
    encoding: str = "utf-8",
) -> pd.DataFrame:
    """Read a Parquet file/folder as typed, or a CSV with every column as text.

    CSV values stay text so that validation, not the reader, decides what is bad and
    can name the row; ``dictionary_columns`` (low-cardinality, e.g. channel) are read
    dictionary-encoded, which makes validating them nearly free. ``encoding`` is the
    CSV's text encoding. A file that cannot be read at all (corrupt, truncated, two
    columns of one name) is a :class:`DataError` naming the file.
    """
    name = path.name.lower()
    if path.is_dir() or name.endswith(".parquet"):
        return _read_parquet(path)
    if name.endswith(".csv") or name.endswith(".csv.gz"):
        return _read_csv(path, dictionary_columns, encoding)
    raise DataError([Problem(str(path), None, None, "unsupported file type (.parquet, .csv)")])


def _unreadable(path: Path, exc: BaseException) -> DataError:
    return DataError([Problem(str(path), None, None, f"cannot read file: {exc}")])


def _check_unique_columns(names: list[str], path: Path) -> None:
    """Two columns of one name would make one of them win silently: refuse, naming both."""
    positions: dict[str, list[int]] = {}
    for i, col in enumerate(names, start=1):
        positions.setdefault(col, []).append(i)
    problems = [
        Problem(
            str(path),
            None,
            col,
            "column name appears more than once (columns "
            + " and ".join(map(str, where))
            + "): rename or drop all but one",
        )
        for col, where in positions.items()
        if len(where) > 1
    ]
    if problems:
        raise DataError(problems)


def _read_parquet(path: Path) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    try:
        if path.is_dir():
            schema = ds.dataset(path, format="parquet").schema
        else:
            schema = pq.read_schema(path)
        _check_unique_columns(schema.names, path)
        table = pq.read_table(path)
        for i, field in enumerate(table.schema):
            if pa.types.is_binary(field.type) or pa.types.is_large_binary(field.type):
                table = table.set_column(
                    i, field.name, _binary_as_text(table.column(i), field.name, path)
                )
            else:
                _check_utf8(table.column(i), field.name, path)
        return table.to_pandas()
    except DataError:
        raise
    except (OSError, EOFError, ValueError, pa.ArrowException) as exc:
        # ValueError: a damaged file can also fail in decoding its metadata (JSON, text)
        raise _unreadable(path, exc) from None


def _check_utf8(values: pa.ChunkedArray, column: str, path: Path) -> None:
    """Parquet readers do not check that text is UTF-8; a damaged or foreign file can hold
    bytes that fail later, deep in pandas. Refuse it here, naming the first such row."""
    import numpy as np
    import pyarrow as pa

    if pa.types.is_dictionary(values.type):
        for start, chunk in _chunk_starts(values):
            found = _first_undecodable(pa.chunked_array([chunk.dictionary]), "utf-8")
            if found is not None:
                rows = np.flatnonzero(chunk.indices.to_numpy(zero_copy_only=False) == found[0])
                if len(rows):
                    raise _not_utf8(path, start + int(rows[0]), column, found[1])
        return
    if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
        found = _first_undecodable(values, "utf-8")
        if found is not None:
            raise _not_utf8(path, found[0], column, found[1])


def _not_utf8(path: Path, row: int, column: str, exc: UnicodeDecodeError) -> DataError:
    byte = exc.object[exc.start : exc.start + 1].hex()
    reason = f"not valid UTF-8 text (byte 0x{byte}); Parquet text must be UTF-8"
    return DataError([Problem(str(path), row + 1, column, reason)])


def _binary_as_text(values: pa.ChunkedArray, column: str, path: Path) -> pa.ChunkedArray:
    """Text stored as plain BINARY (no UTF-8 annotation, as some writers do) read as text;
    bytes that are not UTF-8 refuse the file, naming the first such row."""
    import pyarrow as pa

    text = pa.large_string() if pa.types.is_large_binary(values.type) else pa.string()
    found = _first_undecodable(values, "utf-8")
    if found is not None:
        raise _not_utf8(path, found[0], column, found[1])
    return values.cast(text)


def _open_binary(path: Path) -> BinaryIO:
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")


def _csv_header(path: Path, encoding: str) -> list[str]:
    """The CSV's column names, decoded on their own so a bad byte further down cannot stop us.

    In an ASCII-compatible encoding (UTF-8, latin-1, cp1252...) the first line is cut at
    its newline byte before decoding; other encodings (UTF-16) are decoded as a stream.
    """
    codec = codecs.lookup(encoding).name
    try:
        with _open_binary(path) as fh:
            if _ascii_compatible(codec):
                text = fh.readline(1 << 20).decode("utf-8-sig" if codec == "utf-8" else codec)
            else:
                text = io.TextIOWrapper(fh, encoding=codec, newline="").readline(1 << 20)
    except (OSError, EOFError, zlib.error) as exc:
        raise _unreadable(path, exc) from None
    except UnicodeError as exc:
        why = _not_text(exc, encoding) if isinstance(exc, UnicodeDecodeError) else exc
        raise DataError([Problem(str(path), None, None, f"the header is {why}")]) from None
    try:  # like the reader, take a lone CR as a line end
        return next(csv.reader(text.splitlines()), [])
    except csv.Error as exc:
        raise DataError([Problem(str(path), None, None, f"unreadable header: {exc}")]) from None


def _ascii_compatible(encoding: str) -> bool:
    """Whether newlines and commas are single ASCII bytes, so bytes can be split before decoding."""
    return "\n,".encode(encoding) == b"\n,"


def _not_text(exc: UnicodeDecodeError, encoding: str) -> str:
    byte = exc.object[exc.start : exc.start + 1].hex()
    return (
        f"not valid {encoding} text (byte 0x{byte}); if the file has another encoding, "
        "give it, e.g. --encoding latin-1"
    )


def _read_csv(path: Path, dictionary_columns: frozenset[str], encoding: str) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    header = _csv_header(path, encoding)
    if not header:
        return pd.DataFrame()
    _check_unique_columns(header, path)
    convert = pacsv.ConvertOptions(
        column_types={
            h: pa.dictionary(pa.int32(), pa.string()) if h in dictionary_columns else pa.string()
            for h in header
        },
        strings_can_be_null=True,
        null_values=[""],
    )
    try:
        # pyarrow transcodes other encodings to UTF-8 through Python's codecs.
        table = pacsv.read_csv(
            path, read_options=pacsv.ReadOptions(encoding=encoding), convert_options=convert
        )
        return table.to_pandas()
    except (OSError, EOFError, zlib.error, UnicodeError, pa.ArrowException) as exc:
        problems = _csv_row_problems(path, header, encoding)
        if problems:
            raise DataError(problems) from None
        raise _unreadable(path, exc) from None


def _csv_row_problems(path: Path, header: list[str], encoding: str) -> list[Problem]:
    """After the reader refused a CSV, find the rows that made it: rows with the wrong
    number of fields, or text that does not decode. Runs only when a read failed."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    if not _ascii_compatible(encoding):  # rows cannot be found in the raw bytes (UTF-16)
        return []
    ragged: list[Problem] = []

    def note(row: pacsv.InvalidRow) -> str:  # pyarrow numbers records from 1, header included
        ragged.append(
            Problem(
                str(path),
                row.number - 1 if row.number is not None else None,
                None,
                f"expected {row.expected_columns} fields, got {row.actual_columns}: "
                + show_value(row.text),
            )
        )
        return "skip"

    names = [f"c{i}" for i in range(len(header))]
    read = dict(use_threads=False, skip_rows=1, column_names=names)
    try:
        # Rows with the wrong number of fields. Read as latin-1, which decodes any byte, so
        # that pyarrow can show the row's text whatever bytes it holds.
        pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(encoding="latin-1", **read),
            parse_options=pacsv.ParseOptions(invalid_row_handler=note),
            convert_options=pacsv.ConvertOptions(column_types=dict.fromkeys(names, pa.binary())),
        )
        if ragged:
            return ragged
        # Text that does not decode: the raw bytes of every column, searched per column.
        table = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(**read),
            convert_options=pacsv.ConvertOptions(column_types=dict.fromkeys(names, pa.binary())),
        )
    except (OSError, EOFError, zlib.error, pa.ArrowException):
        return ragged
    problems = []
    for column, values in zip(header, table.columns, strict=True):
        found = _first_undecodable(values, encoding)
        if found is not None:
            row, exc = found
            problems.append(Problem(str(path), row + 1, column, _not_text(exc, encoding)))
    return problems


def _first_undecodable(
    values: pa.ChunkedArray, encoding: str
) -> tuple[int, UnicodeDecodeError] | None:
    """Index of the first value in a text or binary column that is not ``encoding`` text.

    The column's values lie end to end in one buffer: decode it whole (no copy; at memory
    speed for UTF-8) and map a failing byte back to its row through the offsets, with no
    loop over rows.
    """
    import numpy as np
    import pyarrow as pa

    decode = codecs.getdecoder(encoding)
    for start, chunk in _chunk_starts(values):
        _, offsets_buf, data_buf = chunk.buffers()
        if data_buf is None or not len(chunk):
            continue
        wide = pa.types.is_large_binary(chunk.type) or pa.types.is_large_string(chunk.type)
        offsets = np.frombuffer(offsets_buf, dtype=np.int64 if wide else np.int32)[
            chunk.offset : chunk.offset + len(chunk) + 1
        ]
        try:
            decode(memoryview(data_buf)[offsets[0] : offsets[-1]])
        except UnicodeDecodeError as exc:
            row = int(np.searchsorted(offsets, offsets[0] + exc.start, side="right")) - 1
            return start + row, exc
    return None


def _chunk_starts(values: pa.ChunkedArray) -> Iterator[tuple[int, pa.Array]]:
    """(row of its first value, chunk) for each chunk of a chunked array."""
    start = 0
    for chunk in values.chunks:
        yield start, chunk
        start += len(chunk)


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
    return _parse_assignments(items, "--map", "SOURCE_COLUMN", "events.ts=event_time")


def parse_constants(items: list[str]) -> dict[str, dict[str, str]]:
    """Parse ``TABLE.COLUMN=VALUE`` strings (the CLI's ``--set``): a contract column the
    files lack, with one value for every row. Unknown columns and a column set twice are
    refused here; the value is checked against the contract by :func:`load_files`."""
    constants = _parse_assignments(items, "--set", "VALUE", "events.channel=web")
    for table, columns in constants.items():
        for column in columns:
            if column not in TABLES[table].names:
                raise ValueError(
                    f"--set {table}.{column}: not a column of the contract's {table} table "
                    f"(have: {', '.join(TABLES[table].names)})"
                )
    return constants


def _parse_assignments(
    items: list[str], option: str, right: str, example: str
) -> dict[str, dict[str, str]]:
    """``TABLE.COLUMN=TEXT`` strings as ``{table: {column: text}}``; a malformed one, or one
    column given twice with different texts, is a ValueError naming ``option``."""
    out: dict[str, dict[str, str]] = {}
    for item in items:
        target, sep, text = item.partition("=")
        table, dot, column = target.partition(".")
        if not sep or not dot or not column or not text or table not in TABLES:
            raise ValueError(
                f"{option} {item!r}: expected TABLE.COLUMN={right} with TABLE one of "
                f"{', '.join(TABLES)} (e.g. {example})"
            )
        given = out.setdefault(table, {})
        if given.get(column, text) != text:
            raise ValueError(
                f"{option} {table}.{column} is given twice: {given[column]!r}, {text!r}"
            )
        given[column] = text
    return out


def check_constants(constants: ColumnMap, files: Mapping[str, Path], times: TimeRange) -> None:
    """Refuse a ``--set`` whose table has no file or whose value the contract refuses
    (the checks a file's value gets on its own), before any file is read."""
    for table, columns in constants.items():
        if table not in files:
            raise ValueError(f"--set {table}.{next(iter(columns))}: no {table} file to set it on")
        for column, value in columns.items():
            why = check_value(TABLES[table], column, value, times)
            if why is not None:
                raise ValueError(f"--set {table}.{column}={value}: {why}")


def add_constants(
    raw: pd.DataFrame,
    table: str,
    constants: Mapping[str, str],
    mapping: Mapping[str, str],
    file: str,
) -> pd.DataFrame:
    """Add each ``--set`` column with its value on every row (one-category columns, so
    validating them costs one value). A column the file or a ``--map`` already gives is
    refused rather than silently replaced."""
    for column, value in constants.items():
        if column in mapping:
            raise ValueError(
                f"--set {table}.{column}={value}: --map also gives {table}.{column} "
                f"(from column {mapping[column]!r}); keep one of them"
            )
        if column in raw.columns:
            raise ValueError(
                f"--set {table}.{column}={value}: {file} already has a {column!r} column; "
                "drop the --set (or the column from the file)"
            )
    codes = np.zeros(len(raw), dtype=np.int8)
    added = {
        column: pd.Categorical.from_codes(codes, categories=[value])
        for column, value in constants.items()
    }
    return raw.assign(**added) if added else raw


def load_files(
    source: Path | str | Mapping[str, Path | str],
    column_map: ColumnMap | None = None,
    on_error: OnError = "raise",
    encoding: str = "utf-8",
    times: TimeRange | None = None,
    constants: ColumnMap | None = None,
) -> LoadResult:
    """Read, map and validate a source's tables. Missing dimension tables load empty.

    ``encoding`` is the text encoding of CSV files; ``times`` the timestamps accepted
    (default :meth:`TimeRange.default`, fixed once for every table of the load);
    ``constants`` (``{table: {column: value}}``, the CLI's ``--set``) adds columns the
    files lack, validated like the files' own values.
    """
    times = TimeRange.default() if times is None else times
    files = find_table_files(source)
    column_map = column_map or {}
    constants = constants or {}
    check_constants(constants, files, times)
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
        raw = apply_column_map(read_raw(path, categorical, encoding), table, mapping, str(path))
        raw = add_constants(raw, table, constants.get(table, {}), mapping, str(path))
        extra = [c for c in raw.columns if c not in TABLES[table].names]
        if extra:
            result.ignored_columns[table] = extra
        checked = validate_frame(raw, TABLES[table], str(path), on_error=on_error, times=times)
        tables[table] = checked.good
        if checked.n_bad:
            result.quarantined[table] = checked.bad
    result.data = SourceData(name=str(source), **tables)
    return result
