"""Output a script can read (issue 16): piped, listings print in full (no `next_best_cha…`,
whatever COLUMNS says); with --json, one JSON document on stdout and nothing else."""

from __future__ import annotations

import io
import json

import pytest
from cli_helpers import omni

from features.console import PIPED_WIDTH, FullWidthWhenPiped
from features.registry import TABLES


def test_console_is_full_width_only_when_piped():
    # issue 16: a terminal keeps its width; a pipe or file gets lines that are never cut
    assert FullWidthWhenPiped(file=io.StringIO(), width=60).width == PIPED_WIDTH
    assert FullWidthWhenPiped(file=io.StringIO(), width=60, force_terminal=True).width == 60


def test_features_list_piped_is_not_cut_and_json_parses(tmp_path):
    # issue 16: descriptions and names were wrapped or cut at the pipe's 80 columns
    spec = TABLES["customer"]((7, 30, 90, 365))
    longest = max(spec, key=lambda f: len(f.description))
    res = omni("features", "list", home=tmp_path / "home", COLUMNS="60")
    assert res.returncode == 0, res.stderr
    assert "…" not in res.stdout
    assert longest.description in res.stdout
    assert all(f.name in res.stdout for f in spec)
    res = omni("features", "list", "--json", "--table", "item", home=tmp_path / "home")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    item = TABLES["item"]((7, 30, 90, 365))
    assert doc["table"] == "item" and doc["windows"] == [7, 30, 90, 365]
    assert [f["name"] for f in doc["features"]] == [f.name for f in item]
    assert set(doc["features"][0]) == {"name", "dtype", "family", "missing", "description"}
    res = omni("features", "list", "--json", "--markdown", home=tmp_path / "home")
    assert res.returncode == 2 and "--markdown and --json" in res.stderr


def test_data_contract_json(tmp_path):
    # issue 16
    res = omni("data", "contract", "--json", home=tmp_path / "home")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert list(doc) == ["events", "customers", "products", "stores"]
    channel = next(c for c in doc["events"]["columns"] if c["name"] == "channel")
    assert channel["required"] and "direct_mail" in channel["allowed"]
    assert doc["customers"]["key"] == "customer_id"


@pytest.mark.slow
def test_data_summary_piped_and_json(tmp_path):
    # issue 16: the summary's line and table in full, and every count as JSON
    home = tmp_path / "home"
    res = omni("data", "synth", "--customers", "60", "--days", "60", home=home)
    assert res.returncode == 0, res.stderr
    res = omni("data", "summary", "--json", home=home, COLUMNS="40")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert {"events", "customers", "first_ts", "last_ts", "channels"} <= set(doc)
    assert sum(c["events"] for c in doc["channels"].values()) == doc["events"]
    for channel in doc["channels"].values():
        assert sum(channel["by_event_type"].values()) == channel["events"]
    res = omni("data", "summary", home=home, COLUMNS="40")
    assert "…" not in res.stdout
    headline = f"{doc['customers']:,} customers with events"
    assert any(
        line.startswith(headline) and line.rstrip().endswith(")")
        for line in res.stdout.splitlines()
    )
    assert "direct_mail" in res.stdout


@pytest.mark.slow
def test_models_list_piped_prints_names_and_values_in_full(mlflow_settings, tiny_model):
    # issue 16: `omni models list | cat` showed `next_best_cha…` and `0.6…`
    from training.model_io import log_python_model
    from training.model_registry import register_with_gate
    from training.tracking import tracked_run

    model, x = tiny_model
    holdout = {"test_cutoff": "2025-10-01", "horizon_days": 60, "data_fingerprint": "abc"}
    for value in (0.612345678, 0.598765432):
        with tracked_run(mlflow_settings, "next_best_channel") as run:
            info = log_python_model(model, None, x, x.head(3))
        register_with_gate(
            mlflow_settings,
            "next_best_channel",
            run.info.run_id,
            info.model_uri,
            "test_macro_roc_auc",
            value,
            holdout=holdout,
        )
    res = omni("models", "list", home=mlflow_settings.home, COLUMNS="60")
    assert res.returncode == 0, res.stderr
    assert "…" not in res.stdout
    lines = [line for line in res.stdout.splitlines() if "next_best_channel " in line]
    assert len(lines) == 2
    assert "test_macro_roc_auc" in lines[1] and "0.6123" in lines[1] and "@champion" in lines[1]
    assert "v2 test_macro_roc_auc 0.5988 did not beat champion v1 0.6123" in lines[0]
    res = omni("models", "list", "--json", home=mlflow_settings.home, COLUMNS="60")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["tracking_uri"].startswith("sqlite:")
    newest, first = doc["versions"]
    assert first["name"] == "next_best_channel" and first["version"] == 1
    assert first["value"] == 0.612345678 and first["aliases"] == ["champion"]
    assert newest["aliases"] == ["challenger"] and newest["run_id"]
    assert {"metric", "created", "reason"} <= set(newest)
