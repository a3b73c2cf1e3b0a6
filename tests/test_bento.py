"""What `omni bento` adds to a bento, without building one: the snapshot as a BentoML model
(stored once per snapshot), the generated bentofile, and clear errors. The built bento
itself is served in test_service_http.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from serving.bento import (
    SNAPSHOT_MODEL,
    BentoError,
    bento_snapshot,
    pinned_requirements,
    snapshot_version,
    store_snapshot,
    write_bentofile,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def model_store(tmp_path):
    """BentoML's model store in a temporary folder for the test."""
    from bentoml._internal.configuration.containers import BentoMLContainer
    from bentoml._internal.models import ModelStore

    store = ModelStore(tmp_path / "models")
    BentoMLContainer.model_store.set(store)
    yield store
    BentoMLContainer.model_store.reset()


def _snapshot(folder: Path, customers: int = 3) -> Path:
    folder.mkdir(parents=True)
    (folder / "models.pkl").write_bytes(b"not read here")
    manifest = {
        "format": 1,
        "as_of": "2026-01-01T00:00:00+00:00",
        "customers": customers,
        "models": {"churn": {"version": 4}},
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def test_a_snapshot_is_stored_once_as_a_versioned_model(model_store, tmp_path):
    # issue 19: `bentoml models list` shows the snapshot with a version naming it; the same
    # snapshot bundled twice reuses its model, another snapshot is another version
    path = _snapshot(tmp_path / "online" / "20260101T120000123456")
    tag, new = store_snapshot(path)
    assert new and tag == f"{SNAPSHOT_MODEL}:20260101t120000123456-" + tag.split("-")[-1]
    assert store_snapshot(path) == (tag, False)
    [model] = model_store.list()
    assert str(model.tag) == tag
    assert model.info.metadata["snapshot"] == path.name
    assert model.info.metadata["model_versions"] == {"churn": "4"}
    assert (Path(model.path) / path.name / "models.pkl").read_bytes() == b"not read here"
    other = _snapshot(tmp_path / "elsewhere" / path.name, customers=4)  # same name, other files
    assert store_snapshot(other)[0] != tag and len(model_store.list()) == 2


def test_any_folder_name_makes_a_valid_tag(tmp_path):
    from bentoml._internal.tag import validate_tag_str

    for name in ("My Snapshot (copy)!", "x" * 80, "___"):
        validate_tag_str(snapshot_version(_snapshot(tmp_path / name)))  # raises on a bad one


def test_generated_bentofile_pins_the_lock_and_references_the_model(tmp_path):
    lines = pinned_requirements(ROOT)
    assert "mlflow" not in " ".join(lines)  # the bento serves its snapshot: no MLflow
    path = write_bentofile(tmp_path, ROOT, lines, f"{SNAPSHOT_MODEL}:v1")
    config = yaml.safe_load(path.read_text())
    assert config["models"] == [f"{SNAPSHOT_MODEL}:v1"]
    assert config["python"]["lock_packages"] is False
    packages = config["python"]["packages"]
    assert any(p.startswith("lightgbm==") for p in packages)
    assert not any(p.startswith("bentoml") for p in packages)  # BentoML adds its own pin
    assert bento_snapshot(None) is None  # not run from a bento: no bundled snapshot


def test_no_lock_is_a_clear_error(tmp_path):
    with pytest.raises(BentoError, match=r"no uv\.lock"):
        pinned_requirements(tmp_path)
