"""The same pandas feature and scoring code, run on Spark one bucket of customers at a time.

When the event log outgrows one machine, Spark reads the events store (the same
month-partitioned Parquet, see :mod:`features.store.events`), sends every customer's events
and customers-table row to one bucket (``pmod(xxhash64(customer_id), n_buckets)``) and
calls a plain pandas function on each bucket: the very function the local engine calls
on the whole log. Nothing is re-implemented for Spark.

This works because every customer feature is *separable by customer*: a customer's row
depends only on their own events, their own customers-table row and the cutoff (orders
are a customer's ``order_id``, an ``order_id`` shared by two customers is two orders;
store visits compare store ids, not global codes; no feature uses a statistic over other
customers). Events without a customer id produce no row locally and are left out here.
A function that needs global statistics (popularity, a fitted scaler) must get them from
outside, as a dimension (``dims``) computed once, or from the model.

- :func:`spark_session` starts (or joins) a session: local mode by default, any master
  (``spark://host:7077``, ``yarn``, ``k8s://...``) or the one ``spark-submit`` chose.
- :func:`read_events` / :func:`read_table`: the store as Spark DataFrames.
- :func:`run_per_customer`: ``fn(events, dims) -> pandas frame`` per bucket, output
  schema given (:func:`schema_of` derives it from pandas dtypes). Batch scoring plugs
  its scoring function in here.
- :func:`build_from_store_spark`: the customer feature table, equal row for row to
  :func:`features.build.build_from_store`, written the same way.

pyspark is imported only inside functions: it is an optional extra.
"""

from __future__ import annotations

import functools
import os
import shutil
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import DataType, StructType

    from features.build import BuildResult

INSTALL_HINT = "pip install 'omni-personalize[spark]'"
BUCKET = "_omni_bucket"
"""Column holding the customer bucket while a job runs (dropped before ``fn`` sees it)."""

EVENTS_PER_BUCKET = 1_000_000
"""Default bucket size of the feature build: about 250 MB of pandas per call at peak."""

PerCustomerFn = Callable[["pd.DataFrame", Mapping[str, "pd.DataFrame"]], "pd.DataFrame"]


class SparkUnavailable(ValueError):
    """pyspark or Java is missing: a user error with a clear fix, not a crash."""


def require_pyspark() -> None:
    """Raise :class:`SparkUnavailable` with the install command when pyspark is missing."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        raise SparkUnavailable(
            f"the Spark engine needs pyspark, an optional extra: {INSTALL_HINT}"
        ) from None


def require_java() -> None:
    """Raise :class:`SparkUnavailable` when no Java runtime can start Spark's JVM."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").exists():
        return
    if shutil.which("java") is None:
        raise SparkUnavailable(
            "the Spark engine needs Java 17 or newer: install a JRE (e.g. "
            "`apt-get install openjdk-17-jre-headless`) or set JAVA_HOME"
        )


def _under_spark_submit() -> bool:
    """spark-submit (or the pyspark shell) started this process and already chose a master."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def _code_root() -> str:
    """The folder that holds this package (``features/``, ``training/``, ``serving/``)."""
    return str(Path(__file__).resolve().parent.parent)


def spark_session(
    master: str | None = None,
    app_name: str = "omni",
    conf: Mapping[str, str] | None = None,
) -> SparkSession:
    """Start or join a SparkSession.

    ``master``: a Spark master URL (the CLI passes ``--spark-master`` or
    ``$OMNI_SPARK_MASTER``); by default the master spark-submit was given, else
    ``local[*]``. Sessions run in UTC. In local mode the Python workers run this
    interpreter (``PYSPARK_PYTHON``) and import this very checkout of the code
    (``spark.executorEnv.PYTHONPATH``), so an editable install, a worktree or a plain
    checkout all test what they contain. On a cluster the package must be installed
    where the executors run (see docs/spark.md).
    """
    require_pyspark()
    require_java()
    from pyspark.sql import SparkSession

    if master is None and not _under_spark_submit():
        master = "local[*]"
    settings = {
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.ui.showConsoleProgress": "false",
    }
    if master is not None and master.startswith("local"):
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        paths = [_code_root(), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
        settings["spark.executorEnv.PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    settings.update(conf or {})
    builder = SparkSession.builder.appName(app_name)
    if master is not None:
        builder = builder.master(master)
    for key, value in settings.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session


# ---------------------------------------------------------------- schemas
_SPARK_TYPES = {
    "bool": "BooleanType",
    "int8": "ByteType",
    "int16": "ShortType",
    "int32": "IntegerType",
    "int64": "LongType",
    "float32": "FloatType",
    "float64": "DoubleType",
    "str": "StringType",
    "string": "StringType",
    "object": "StringType",
}


def spark_type(dtype: Any) -> DataType:
    """The Spark type of a pandas / numpy dtype (nullable extension types included)."""
    import pandas as pd
    from pyspark.sql import types as T

    if isinstance(dtype, pd.DatetimeTZDtype) or str(dtype).startswith("datetime64"):
        return T.TimestampType()
    if isinstance(dtype, pd.CategoricalDtype):
        return T.StringType()
    name = str(dtype).lower()
    name = {"boolean": "bool"}.get(name, name)
    if name not in _SPARK_TYPES:
        raise TypeError(f"no Spark type for pandas dtype {dtype!r}")
    return getattr(T, _SPARK_TYPES[name])()


def schema_of(frame: pd.DataFrame, index: bool = True) -> StructType:
    """A Spark schema from a pandas frame's dtypes (a named index becomes the first column).

    Use it on an empty frame of the right shape, e.g. the local function's output on
    no events, to declare what :func:`run_per_customer` returns.
    """
    from pyspark.sql import types as T

    fields = []
    if index and frame.index.name is not None:
        fields.append(T.StructField(frame.index.name, spark_type(frame.index.dtype)))
    for name, dtype in frame.dtypes.items():
        fields.append(T.StructField(str(name), spark_type(dtype)))
    return T.StructType(fields)


def feature_schema(windows: Sequence[int]) -> StructType:
    """``customer_id`` and every customer feature with its registry dtype."""
    from pyspark.sql import types as T

    from features.registry import customer_features

    fields = [T.StructField("customer_id", T.StringType(), nullable=False)]
    fields += [T.StructField(f.name, spark_type(f.dtype)) for f in customer_features(windows)]
    return T.StructType(fields)


# ---------------------------------------------------------------- reading the store
def read_events(
    spark: SparkSession,
    store_dir: Path | str,
    start: Any = None,
    end: Any = None,
    columns: Sequence[str] | None = None,
) -> DataFrame:
    """Events with ``start <= ts < end`` (bounds optional) as a Spark DataFrame.

    Spark prunes the store's month partitions as :func:`features.store.events.read_events` does
    and reads only ``columns`` (default: every contract column).
    """
    from pyspark.sql import functions as F

    from features.contract.schema import EVENTS
    from features.cutoffs import to_utc
    from features.store.events import event_files, month_key

    base, files = event_files(store_dir)  # only the parts the manifest lists
    wanted = list(columns or EVENTS.names)
    if not files:
        return spark.createDataFrame([], _contract_schema(EVENTS, wanted))
    df = spark.read.option("basePath", str(base)).parquet(*map(str, files))
    if start is not None:
        t = to_utc(start)
        df = df.where(F.col("month") >= month_key(t))
        df = df.where(F.col("ts") >= F.timestamp_micros(F.lit(t.value // 1_000)))
    if end is not None:
        t = to_utc(end)
        df = df.where(F.col("month") <= month_key(t))
        df = df.where(F.col("ts") < F.timestamp_micros(F.lit(t.value // 1_000)))
    for name in wanted:  # columns never written still come back, as nulls
        if name not in df.columns:
            df = df.withColumn(name, F.lit(None).cast(_contract_type(EVENTS.column(name).kind)))
    return df.select(*wanted)


def read_table(spark: SparkSession, store_dir: Path | str, name: str) -> DataFrame:
    """A dimension table of the store as a Spark DataFrame (empty if never written)."""
    from features.contract.schema import TABLES
    from features.store.events import table_file

    path = table_file(store_dir, name)
    if path is None:
        return spark.createDataFrame([], _contract_schema(TABLES[name], TABLES[name].names))
    return spark.read.parquet(str(path))


def _contract_type(kind: str) -> DataType:
    from pyspark.sql import types as T

    return {
        "string": T.StringType(),
        "category": T.StringType(),
        "timestamp": T.TimestampType(),
        "int": T.LongType(),
        "float": T.DoubleType(),
        "bool": T.BooleanType(),
    }[kind]


def _contract_schema(table, names: Sequence[str]) -> StructType:
    from pyspark.sql import types as T

    return T.StructType([T.StructField(n, _contract_type(table.column(n).kind)) for n in names])


# ---------------------------------------------------------------- running pandas code
def run_per_customer(
    events: DataFrame,
    fn: PerCustomerFn,
    schema: StructType,
    customers: DataFrame | None = None,
    dims: Mapping[str, pd.DataFrame] | None = None,
    n_buckets: int | None = None,
) -> DataFrame:
    """Run ``fn(events, dims)`` on every bucket of customers; the union of its outputs.

    Each call gets contract frames, exactly as the local engine reads them (see
    :func:`features.store.events.read_events`): ``events`` holds *all* the events of the
    bucket's customers (events without a customer id are left out), and
    ``dims["customers"]`` their customers-table rows, including customers without any
    event. The other ``dims`` (small tables such as products and stores, or anything a
    function needs whole) travel with the function to every executor.

    ``fn`` returns a pandas frame with the columns of ``schema`` (a named index, e.g.
    ``customer_id``, counts as a column); :func:`schema_of` derives a schema from a
    frame. ``n_buckets`` defaults to ``spark.sql.shuffle.partitions``: each call sees
    about ``1 / n_buckets`` of the customers, so choose it so that a bucket fits in an
    executor's memory.

    Batch scoring, for instance::

        def score(events, dims):
            X = build_customer_features(events, dims["customers"], as_of)
            return score_frame(model, X)

        run_per_customer(events, score, schema_of(score(empty_events, empty_dims)), customers)
    """
    from pyspark.sql import functions as F

    from features.contract.schema import CUSTOMERS, EVENTS

    spark = events.sparkSession
    n = int(n_buckets or spark.conf.get("spark.sql.shuffle.partitions"))
    event_cols = [c for c in events.columns if c != BUCKET]
    small = dict(dims or {})

    def bucketed(df: DataFrame) -> DataFrame:
        key = F.pmod(F.xxhash64(F.col("customer_id")), F.lit(n))
        df = df.where(F.col("customer_id").isNotNull())
        return _timestamps_as_micros(df).withColumn(BUCKET, key)

    names = [f.name for f in schema.fields]
    ev = bucketed(events)
    if customers is None:

        def one(pdf: pd.DataFrame) -> pd.DataFrame:
            frame = _contract_frame(pdf, event_cols, EVENTS)
            return _conform(fn(frame, small), names)

        return ev.groupBy(BUCKET).applyInPandas(one, schema)

    cust_cols = customers.columns

    def both(ev_pdf: pd.DataFrame, cust_pdf: pd.DataFrame) -> pd.DataFrame:
        frame = _contract_frame(ev_pdf, event_cols, EVENTS)
        bucket_dims = {**small, "customers": _contract_frame(cust_pdf, cust_cols, CUSTOMERS)}
        return _conform(fn(frame, bucket_dims), names)

    grouped = bucketed(customers).groupBy(BUCKET)
    return ev.groupBy(BUCKET).cogroup(grouped).applyInPandas(both, schema)


def _timestamps_as_micros(df: DataFrame) -> DataFrame:
    """Timestamps travel as int64 microseconds: no session time zone can shift them."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import TimestampType

    for field in df.schema.fields:
        if isinstance(field.dataType, TimestampType):
            df = df.withColumn(field.name, F.unix_micros(F.col(field.name)))
    return df


def _contract_frame(pdf: pd.DataFrame, columns: Sequence[str], table) -> pd.DataFrame:
    """A bucket as Spark hands it over -> the contract frame the local engine would read."""
    import numpy as np
    import pandas as pd

    from features.contract.schema import as_contract_frame

    out = {}
    for name in columns:
        values = pdf[name] if name in pdf.columns else pd.Series([], dtype="float64")
        kind = table.column(name).kind if name in table.names else None
        if kind == "timestamp":
            us = values.to_numpy(dtype="float64", na_value=np.nan)
            known = ~np.isnan(us)
            stamps = np.full(len(us), np.datetime64("NaT"), dtype="datetime64[us]")
            stamps[known] = us[known].astype(np.int64).astype("datetime64[us]")
            values = pd.Series(stamps, index=values.index).dt.tz_localize("UTC")
        elif kind in ("string", "category"):
            values = values.astype("str")
        elif kind == "int":
            values = values.astype("Int64")
        elif kind == "float":
            values = values.astype("float64")
        elif kind == "bool":
            values = values.astype("boolean")
        out[name] = values.reset_index(drop=True)
    frame = pd.DataFrame(out, columns=list(columns))
    return as_contract_frame(frame, table)


def _conform(out: pd.DataFrame, names: Sequence[str]) -> pd.DataFrame:
    """``fn``'s output with its named index as a column, columns in schema order (no copy)."""
    import pandas as pd

    index = out.index.name if out.index.name in names else None
    missing = [n for n in names if n not in out.columns and n != index]
    if missing:
        raise ValueError(f"the per-customer function returned no column(s) {missing}")
    data = {}
    for n in names:
        values = out.index.to_series() if n == index else out[n]
        if isinstance(values.dtype, pd.StringDtype):
            # pandas 3 strings may sit in several Arrow chunks, which pyspark cannot send
            values = pd.Series(values.to_numpy(dtype=object, na_value=None), index=values.index)
        data[n] = values
    return pd.DataFrame(data, copy=False).reset_index(drop=True)


def default_buckets(spark: SparkSession, n_events: int) -> int:
    """One bucket per core, more when that would exceed ``EVENTS_PER_BUCKET`` events each.

    Each bucket is one pandas call with a fixed cost (about 0.1 s): thousands of tiny
    buckets (e.g. 200 shuffle partitions on 1M events) are several times slower.
    """
    return max(spark.sparkContext.defaultParallelism, -(-n_events // EVENTS_PER_BUCKET), 1)


def collect(df: DataFrame) -> pd.DataFrame:
    """A (small enough) Spark result on the driver, through Arrow."""
    if hasattr(df, "toArrow"):  # pyspark >= 4.0
        return df.toArrow().to_pandas()
    return df.toPandas()


# ---------------------------------------------------------------- the feature build
def _features(
    events: pd.DataFrame, dims: Mapping[str, pd.DataFrame], as_of, windows
) -> pd.DataFrame:
    from features.customer_features import build_customer_features

    return build_customer_features(events, dims.get("customers"), as_of, windows)


def build_features_spark(
    events: DataFrame,
    customers: DataFrame | None,
    as_of: Any,
    windows: Sequence[int],
    n_buckets: int | None = None,
) -> DataFrame:
    """The customer features of every customer as a Spark DataFrame (``customer_id`` first)."""
    from features.cutoffs import parse_cutoff
    from features.registry import check_windows

    t, windows = parse_cutoff(as_of), check_windows(windows)
    fn = functools.partial(_features, as_of=t, windows=windows)
    return run_per_customer(events, fn, feature_schema(windows), customers, n_buckets=n_buckets)


def to_feature_table(pdf: pd.DataFrame, windows: Sequence[int]) -> pd.DataFrame:
    """Collected rows -> the local table: index ``customer_id`` (sorted), registry dtypes."""
    from features.registry import customer_features

    table = pdf.sort_values("customer_id", kind="stable").set_index("customer_id")
    dtypes = {f.name: f.dtype for f in customer_features(windows)}
    return table.astype(dtypes)


def build_from_store_spark(
    spark: SparkSession,
    store_dir: Path,
    as_of: Any,
    out: Path,
    windows: Sequence[int],
    n_buckets: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> BuildResult:
    """:func:`features.build.build_from_store` on Spark: same months read, same table written.

    The table is collected on the driver and written there (one Parquet file with the
    cutoff, windows and feature list in its metadata, atomically), like the local build.
    ``n_buckets`` defaults to :func:`default_buckets`.
    """
    import pandas as pd

    from features.build import EVENT_COLUMNS, write_result
    from features.cutoffs import parse_cutoff
    from features.registry import check_windows

    t, windows = parse_cutoff(as_of), check_windows(windows)
    tell = progress or (lambda _: None)
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    start = t - pd.Timedelta(days=windows[-1])
    events = read_events(spark, store_dir, start=start, end=t, columns=EVENT_COLUMNS)
    customers = read_table(spark, store_dir, "customers")
    n_events = events.count()
    seconds["read"] = time.perf_counter() - t0
    tell(f"{n_events:,} events from {start:%Y-%m-%d} to {t:%Y-%m-%d}")
    t0 = time.perf_counter()
    rows = build_features_spark(
        events, customers, t, windows, n_buckets or default_buckets(spark, n_events)
    )
    table = to_feature_table(collect(rows), windows)
    seconds["build"] = time.perf_counter() - t0
    return write_result(table, out, t, windows, n_events, seconds)
