"""The Spark engine in local mode (issue 6): the same pandas code per bucket of customers,
results equal to the local engine's row for row."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from feature_frames import AS_OF, CUSTOMERS_TINY, TINY, random_log
from typer.testing import CliRunner

from features.build import build_from_store, read_metadata
from features.contract.schema import PRODUCTS, STORES, empty_frame
from features.registry import feature_names
from features.sources.base import SourceData
from features.store.events import write_store

pytestmark = pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas")

_no_java = pytest.mark.skipif(
    shutil.which("java") is None and not os.environ.get("JAVA_HOME"),
    reason="no Java runtime (.ci/run installs one)",
)


def needs_spark(test):
    """Starts (or shares) a local Spark: a JVM, so slow; skipped only without Java."""
    return pytest.mark.slow(_no_java(test))


def _store(path: Path, events: pd.DataFrame, customers: pd.DataFrame) -> Path:
    data = SourceData(
        events=events,
        customers=customers,
        products=empty_frame(PRODUCTS),
        stores=empty_frame(STORES),
    )
    return write_store(data, path)


@pytest.fixture(scope="session")
def spark():
    """One local Spark for the whole run: 2 cores, 3 shuffle partitions, no UI."""
    pytest.importorskip("pyspark")
    from features.spark import spark_session

    conf = {
        "spark.sql.shuffle.partitions": "3",
        "spark.default.parallelism": "2",
        "spark.ui.enabled": "false",
        "spark.driver.memory": "1g",
    }
    session = spark_session("local[2]", app_name="omni tests", conf=conf)
    yield session
    session.stop()


def _parity(spark, store: Path, tmp_path: Path, as_of=AS_OF, windows=(7, 30, 90, 365), **kw):
    from features.spark import build_from_store_spark

    local = build_from_store(store, as_of, tmp_path / "local.parquet", windows)
    out = tmp_path / "spark.parquet"
    on_spark = build_from_store_spark(spark, store, as_of, out, windows, **kw)
    assert len(local.table) > 0
    pd.testing.assert_frame_equal(on_spark.table, local.table)
    # the files too: same table, same metadata (cutoff, windows, features, events read)
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "spark.parquet"), pd.read_parquet(tmp_path / "local.parquet")
    )
    assert read_metadata(on_spark.path) == read_metadata(local.path)
    return on_spark


@needs_spark
def test_hand_made_log_matches_the_local_build(spark, tmp_path):
    """Customers only in the customers table, signed up after the cutoff, unresolved events."""
    store = _store(tmp_path / "store", TINY, CUSTOMERS_TINY)
    result = _parity(spark, store, tmp_path)
    assert list(result.table.index) == ["a", "b", "d"]
    _parity(spark, store, tmp_path / "w", as_of="2025-03-01 12:00", windows=(3, 14))


@needs_spark
def test_buckets_of_customers_without_events(spark, tmp_path):
    """30 customers known only from the customers table: most buckets have no events."""
    extra = pd.DataFrame(
        {"customer_id": [f"x{i:02d}" for i in range(30)], "signup_ts": AS_OF - pd.Timedelta("9D")}
    )
    customers = pd.concat([CUSTOMERS_TINY, extra], ignore_index=True)
    store = _store(tmp_path / "store", TINY, customers)
    result = _parity(spark, store, tmp_path, n_buckets=5)
    assert result.n_customers == 33


@needs_spark
@pytest.mark.parametrize("seed", [0, 1])
def test_messy_random_logs_match_the_local_build(spark, tmp_path, seed):
    """Shared order ids, lines without order ids, null customers and stores, NaN amounts."""
    events, customers = random_log(seed, n=3000, n_customers=80)
    _parity(spark, _store(tmp_path / "store", events, customers), tmp_path, n_buckets=7)


@needs_spark
def test_synthetic_store_matches_the_local_build(spark, tmp_path):
    from features.sources.synthetic import generate

    data = generate(n_customers=400, days=200, seed=3, end="2026-01-01")
    store = write_store(data, tmp_path / "store")
    result = _parity(spark, store, tmp_path, as_of="2025-12-01")
    assert result.n_customers > 300 and result.n_events > 10_000


@needs_spark
def test_reads_only_the_parts_the_manifest_lists(spark, tmp_path):
    # issue 14: Spark read every file under store/events, so parts of a killed write counted.
    import json

    from features import spark as fs

    store = _store(tmp_path / "store", TINY, CUSTOMERS_TINY)
    listed = json.loads((store / "manifest.json").read_text())["events"][0]["path"]
    shutil.copy(store / listed, (store / listed).with_name("ev-killedwrite-0.parquet"))
    assert fs.read_events(spark, store).count() == len(TINY)
    _parity(spark, store, tmp_path)


@needs_spark
def test_run_per_customer_gives_each_customer_all_their_rows_once(spark, tmp_path):
    from features import spark as fs

    # defined here: pickled by value (workers cannot import the test module)
    def per_customer(events: pd.DataFrame, dims) -> pd.DataFrame:
        """Events and customers rows per customer, and what each call saw."""
        import features

        listed = dims["customers"]["customer_id"]
        ids = pd.Index(sorted(set(events["customer_id"]) | set(listed)), dtype="str")
        out = pd.DataFrame(index=ids.rename("customer_id"))
        out["n_events"] = events["customer_id"].value_counts().reindex(ids, fill_value=0)
        out["listed"] = ids.isin(listed)
        out["n_stores"] = len(dims["stores"])
        out["first_ts"] = events.groupby("customer_id")["ts"].min().reindex(ids)
        out["call"] = ",".join(ids)
        out["code_root"] = str(Path(features.__file__).resolve().parent.parent)
        return out

    events, customers = random_log(5, n=400, n_customers=20)
    store = _store(tmp_path / "store", events, customers)
    stores = pd.DataFrame({"store_id": ["s1", "s2", "s3"], "region": ["n", "s", "s"]})
    sdf = fs.read_events(spark, store)
    empty = events.iloc[:0]
    schema = fs.schema_of(per_customer(empty, {"customers": customers.iloc[:0], "stores": stores}))
    rows = fs.run_per_customer(
        sdf,
        per_customer,
        schema,
        customers=fs.read_table(spark, store, "customers"),
        dims={"stores": stores},
        n_buckets=4,
    )
    got = fs.collect(rows).set_index("customer_id").sort_index()
    known = events.dropna(subset=["customer_id"])
    ids = sorted(set(known["customer_id"]) | set(customers["customer_id"]))
    assert list(got.index) == ids  # every customer exactly once, unresolved events left out
    expected = known.groupby("customer_id")["customer_id"].size().reindex(ids, fill_value=0)
    assert got["n_events"].tolist() == expected.tolist()
    assert got["listed"].tolist() == [c in set(customers["customer_id"]) for c in ids]
    assert (got["n_stores"] == 3).all()  # dims travel whole to every call
    first = known.groupby("customer_id")["ts"].min().reindex(ids)
    pd.testing.assert_series_equal(
        pd.to_datetime(got["first_ts"], utc=True), first, check_names=False, check_index=False
    )
    assert 1 < got["call"].nunique() <= 4  # several buckets, each call many customers
    # workers import this checkout of the code, not some other install of the package
    assert set(got["code_root"]) == {str(Path(fs.__file__).resolve().parent.parent)}


def test_schema_of_maps_pandas_dtypes():
    pytest.importorskip("pyspark")
    from features.spark import schema_of

    frame = pd.DataFrame(
        {
            "f": pd.Series([], dtype="float32"),
            "n": pd.Series([], dtype="int8"),
            "b": pd.Series([], dtype="bool"),
            "s": pd.Series([], dtype="str"),
            "t": pd.Series([], dtype="datetime64[us, UTC]"),
        },
        index=pd.Index([], dtype="str", name="customer_id"),
    )
    got = [(f.name, f.dataType.simpleString()) for f in schema_of(frame).fields]
    assert got == [
        ("customer_id", "string"),
        ("f", "float"),
        ("n", "tinyint"),
        ("b", "boolean"),
        ("s", "string"),
        ("t", "timestamp"),
    ]
    with pytest.raises(TypeError, match="no Spark type"):
        schema_of(pd.DataFrame({"c": pd.Series([], dtype="complex128")}))


# ---------------------------------------------------------------- the command line
def _cli(*args: str, home: Path):
    from serving.cli.main import app

    return CliRunner().invoke(app, ["--home", str(home), *args])


def test_missing_pyspark_says_how_to_install_it(tmp_path, monkeypatch):
    _store(tmp_path / "store", TINY, CUSTOMERS_TINY)
    monkeypatch.setitem(sys.modules, "pyspark", None)  # `import pyspark` raises ImportError
    res = _cli("features", "build", "--as-of", "2025-03-01", "--engine", "spark", home=tmp_path)
    assert res.exit_code == 2
    assert "pip install 'omni-personalize[spark]'" in " ".join(res.output.split())
    assert "Traceback" not in res.output


def test_missing_java_is_a_clean_error(monkeypatch):
    from features.spark import SparkUnavailable, require_java

    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(SparkUnavailable, match="Java 17"):
        require_java()


def test_unknown_engine_is_a_clean_error(tmp_path):
    res = _cli("features", "build", "--as-of", "2025-03-01", "--engine", "dask", home=tmp_path)
    assert res.exit_code == 2 and "--engine must be local or spark" in res.output


@needs_spark
def test_cli_spark_build_writes_the_local_table(tmp_path):
    """`omni features build --engine spark` in a fresh process, as a user runs it."""
    _store(tmp_path / "store", TINY, CUSTOMERS_TINY)
    env = {**os.environ, "OMNI_HOME": str(tmp_path), "OMNI_SPARK_MASTER": "local[2]"}
    out = tmp_path / "spark.parquet"
    args = ["features", "build", "--as-of", "2025-03-01", "--engine", "spark", "--out", str(out)]
    res = subprocess.run(
        [sys.executable, "-m", "serving.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    assert "Spark master local[2]" in res.stdout
    assert f"3 customers x {len(feature_names())} features" in res.stdout
    local = build_from_store(tmp_path / "store", AS_OF, tmp_path / "local.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(out), pd.read_parquet(local.path))
    assert read_metadata(out) == read_metadata(local.path)
