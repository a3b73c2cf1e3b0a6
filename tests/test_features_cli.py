"""`omni features list | build` through the real command line (issue 3)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from feature_frames import AS_OF, CUSTOMERS_TINY, TINY

from features.build import read_metadata
from features.contract.schema import PRODUCTS, STORES, empty_frame
from features.customer_features import build_customer_features
from features.registry import customer_features, feature_names, item_features
from features.sources.base import SourceData
from features.store.events import write_store

OMNI = [sys.executable, "-m", "serving.cli"]


def _omni(*args: str, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMNI_HOME": str(home), "COLUMNS": "250"}
    return subprocess.run(
        [*OMNI, *args], capture_output=True, text=True, env=env, timeout=180, check=False
    )


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """A data home whose store holds the hand-made log."""
    home = tmp_path_factory.mktemp("home")
    data = SourceData(
        events=TINY,
        customers=CUSTOMERS_TINY,
        products=empty_frame(PRODUCTS),
        stores=empty_frame(STORES),
    )
    write_store(data, home / "store")
    return home


def test_list_prints_the_registry(tmp_path):
    res = _omni("features", "list", home=tmp_path)
    assert res.returncode == 0, res.stderr
    for f in customer_features():
        assert f.name in res.stdout
    assert "days since the last purchase" in res.stdout and "NaN" in res.stdout
    res = _omni("features", "list", "--table", "item", "--windows", "7,28", home=tmp_path)
    assert res.returncode == 0, res.stderr
    assert all(f.name in res.stdout for f in item_features((7, 28)))


def test_docs_list_exactly_the_registry(tmp_path):
    """Issue 15: docs/feature_list.md is generated from the registry; regenerate it with
    `omni features list --markdown > docs/feature_list.md` after changing a feature."""
    res = _omni("features", "list", "--markdown", home=tmp_path)
    assert res.returncode == 0, res.stderr
    docs = Path(__file__).resolve().parents[1] / "docs" / "feature_list.md"
    assert res.stdout == docs.read_text(), "regenerate docs/feature_list.md"
    assert all(f"`{f.name}`" in res.stdout for f in customer_features())


def test_build_writes_the_table_with_its_metadata(home):
    res = _omni("features", "build", "--as-of", "2025-03-01", home=home)
    assert res.returncode == 0, res.stderr
    assert f"3 customers x {len(feature_names())} features" in res.stdout
    path = home / "features" / "customer_features_2025-03-01.parquet"
    table = pd.read_parquet(path)
    assert list(table.columns) == feature_names()
    assert table.index.name == "customer_id"
    expected = build_customer_features(TINY, CUSTOMERS_TINY, AS_OF)
    pd.testing.assert_frame_equal(table, expected, check_index_type=False)
    meta = read_metadata(path)
    assert meta["as_of"] == "2025-03-01T00:00:00+00:00"
    assert meta["windows"] == [7, 30, 90, 365] and meta["lookback_days"] == 365
    assert [f["name"] for f in meta["features"]] == feature_names()
    assert not list(path.parent.glob(".*tmp*"))  # written atomically, nothing left behind


def test_build_reads_only_the_months_it_needs(home, tmp_path):
    """Corrupt a month outside the lookback: the build never opens it."""
    store = tmp_path / "store"
    import shutil

    shutil.copytree(home / "store", store)
    for part in (store / "events" / "month=202401").iterdir():
        part.write_bytes(b"not parquet")
    out = tmp_path / "f.parquet"
    res = _omni(
        "--home",
        str(tmp_path),
        "features",
        "build",
        "--as-of",
        "2025-03-01",
        "--out",
        str(out),
        home=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    assert len(pd.read_parquet(out)) == 3


def test_custom_windows_and_output(home, tmp_path):
    out = tmp_path / "w.parquet"
    res = _omni(
        "features",
        "build",
        "--as-of",
        "2025-03-01 12:00",
        "--windows",
        "3,14",
        "--out",
        str(out),
        home=home,
    )
    assert res.returncode == 0, res.stderr
    assert list(pd.read_parquet(out).columns) == feature_names((3, 14))
    assert read_metadata(out)["as_of"] == "2025-03-01T12:00:00+00:00"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--as-of", "yesterday-ish"], "--as-of 'yesterday-ish' is not a date"),
        (["--as-of", "2025-13-45"], "is not a date"),
        (["--as-of", "2025-03-01", "--windows", "7,x"], "--windows '7,x'"),
        (["--as-of", "2025-03-01", "--windows", "0,7"], "positive"),
    ],
)
def test_bad_parameters_are_clean_errors(home, args, message):
    res = _omni("features", "build", *args, home=home)
    assert res.returncode == 2
    assert message in res.stderr
    assert "Traceback" not in res.stderr + res.stdout


def test_missing_store_says_what_to_do(tmp_path):
    res = _omni("features", "build", "--as-of", "2025-03-01", home=tmp_path / "empty")
    assert res.returncode == 2 and "load data first" in res.stderr


def test_help_stays_light():
    code = (
        "import sys; from typer.testing import CliRunner; from serving.cli.main import app;"
        "r = CliRunner().invoke(app, ['features', '--help']); assert r.exit_code == 0, r.output;"
        "print(sorted({'pandas', 'pyarrow', 'numpy'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
