"""The `omni` command line: fast help, clean errors, exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

OMNI = [sys.executable, "-m", "serving.cli"]


def _omni(*args: str, home: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMNI_HOME": str(home), "COLUMNS": "200"}
    return subprocess.run(
        [*OMNI, *args], capture_output=True, text=True, env=env, timeout=timeout, check=False
    )


def test_help_does_not_import_heavy_libraries():
    code = (
        "import sys; from typer.testing import CliRunner; from serving.cli.main import app;"
        "r = CliRunner().invoke(app, ['--help']); assert r.exit_code == 0, r.output;"
        "heavy = {'mlflow', 'lightgbm', 'bentoml', 'pandas', 'implicit', 'sklearn'};"
        "print(sorted(heavy & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_every_command_has_help(tmp_path):
    for args in (
        ["--help"],
        ["data", "--help"],
        ["data", "load", "--help"],
        ["run", "--help"],
        ["models", "--help"],
        ["models", "promote", "--help"],
        ["journeys", "run", "--help"],
        ["journeys", "train-uplift", "--help"],
    ):
        res = _omni(*args, home=tmp_path)
        assert res.returncode == 0, res.stderr
        assert "Usage" in res.stdout


def test_version_is_the_package_version(tmp_path):
    # issue 19: `omni --version`, as the service's OpenAPI document and metrics say it
    from importlib import metadata

    res = _omni("--version", home=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout == f"omni {metadata.version('omni-personalize')}\n"


def test_bad_file_is_a_clean_error(tmp_path, raw_events):
    src = tmp_path / "src"
    src.mkdir()
    raw_events.loc[1, "channel"] = "carrier-pigeon"
    raw_events.to_csv(src / "events.csv", index=False)
    res = _omni("data", "load", str(src), home=tmp_path / "home")
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    assert "events.csv, row 2, column 'channel'" in res.stderr
    assert not (tmp_path / "home" / "store").exists()  # nothing half-written


def test_quarantine_from_the_cli(tmp_path, raw_events):
    src = tmp_path / "src"
    src.mkdir()
    raw_events.rename(columns={"ts": "when"}).assign(
        channel=lambda d: d["channel"].mask(d.index == 0, "fax")
    ).to_parquet(src / "events.parquet")
    res = _omni(
        "data",
        "load",
        str(src),
        "--map",
        "events.ts=when",
        "--on-error",
        "quarantine",
        home=tmp_path / "home",
    )
    assert res.returncode == 0, res.stderr
    assert "quarantined 1 bad rows" in res.stdout
    bad = pd.read_csv(next((tmp_path / "home" / "quarantine").rglob("events.csv")))
    assert bad["_reason"].str.startswith("unknown value").all()


def test_bad_parameters_name_the_parameter(tmp_path):
    res = _omni("data", "load", str(tmp_path), "--on-error", "ignore", home=tmp_path)
    assert res.returncode == 2
    assert "--on-error must be 'raise' or 'quarantine'" in res.stderr
    res = _omni("data", "load", "--map", "nonsense", "--table", "events=x.csv", home=tmp_path)
    assert res.returncode == 2 and "--map 'nonsense'" in res.stderr
    res = _omni("data", "summary", home=tmp_path / "empty")
    assert res.returncode == 2 and "load data first" in res.stderr


def test_synth_rejects_a_bad_end_date(tmp_path):
    res = _omni("data", "synth", "--customers", "50", "--end", "someday", home=tmp_path)
    assert res.returncode == 2
    assert "--end 'someday' is not a date" in res.stderr
    assert not (tmp_path / "raw").exists()
