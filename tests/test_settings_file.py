"""Settings from a file (issue 19): ``omni.toml`` in the home or ``--config``, under the
environment, every key documented in one table, bad files one line naming the file."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from features.settings import FILE_KEYS, Settings, get_settings

DOCS = Path(__file__).resolve().parents[1] / "docs" / "settings.md"


def _home(tmp_path: Path, text: str) -> Path:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    (home / "omni.toml").write_text(text)
    return home


def test_the_homes_file_sets_and_the_environment_overrides(tmp_path):
    home = _home(tmp_path, 'seed = 7\ngate_min_improvement = 0.01\ntracing = true\ngc = "auto"\n')
    settings = get_settings({"OMNI_HOME": str(home)})
    assert (settings.seed, settings.gate_min_improvement) == (7, 0.01)
    assert settings.tracing is True and settings.gc_mode == "auto"
    env = {"OMNI_HOME": str(home), "OMNI_SEED": "9", "OMNI_TRACING": "0"}
    assert (get_settings(env).seed, get_settings(env).tracing) == (9, False)
    assert get_settings({"OMNI_HOME": str(tmp_path / "other")}).seed == 42  # no file: defaults


def test_config_names_a_file_which_may_move_the_home(tmp_path):
    config = tmp_path / "prod.toml"
    config.write_text(f'home = "{tmp_path / "elsewhere"}"\nkeep_snapshots = 5\n')
    settings = get_settings({"OMNI_CONFIG": str(config)})
    assert settings.home == tmp_path / "elsewhere" and settings.keep_snapshots == 5
    with pytest.raises(ValueError, match=r"OMNI_CONFIG / --config: no settings file at"):
        get_settings({"OMNI_CONFIG": str(tmp_path / "missing.toml")})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("sed = 1\n", r"omni.toml: unknown setting 'sed'"),
        ('home = "/x"\n', r"omni.toml: unknown setting 'home'"),  # the home's own file
        ("seed = [1, 2]\n", r"omni.toml: seed must be a string, number or boolean"),
        ("seed = \n", r"omni.toml: not a readable TOML settings file"),
        ('seed = "x"\n', r"OMNI_SEED .* must be integers.*\(set in .*omni.toml\)"),
        ("gate_min_improvement = -1\n", r"OMNI_GATE_MIN_IMPROVEMENT must be .*omni.toml\)"),
    ],
)
def test_a_bad_file_is_an_error_naming_it(tmp_path, text, message):
    home = _home(tmp_path, text)
    with pytest.raises(ValueError, match=message):
        get_settings({"OMNI_HOME": str(home)})


def test_a_bad_file_from_the_cli_is_one_line_and_exit_2(tmp_path):
    home = _home(tmp_path, "keep_scores = 0\n")
    env = {**os.environ, "OMNI_HOME": str(home)}
    out = subprocess.run(
        [sys.executable, "-m", "serving.cli", "models", "list"],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert out.returncode == 2
    assert "OMNI_KEEP_SCORES" in out.stderr and str(home / "omni.toml") in out.stderr
    assert "Traceback" not in out.stderr
    config = tmp_path / "team.toml"
    config.write_text("kep_scores = 3\n")
    out = subprocess.run(
        [sys.executable, "-m", "serving.cli", "--config", str(config), "models", "list"],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert out.returncode == 2 and f"{config}: unknown setting 'kep_scores'" in out.stderr


def test_every_setting_is_in_the_one_table():
    text = DOCS.read_text()
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    keys = {m.group(1) for row in rows if (m := re.match(r" `(\w+)`", row.split("|")[2]))}
    assert set(FILE_KEYS) <= keys
    for variable in FILE_KEYS.values():
        assert f"`{variable}`" in text, variable
    fields = {f.name for f in dataclasses.fields(Settings)}
    named = {"home", "tracking_uri", "gc_mode"}  # keys: home, mlflow_tracking_uri, gc
    assert fields - named <= set(FILE_KEYS)
