"""What `omni bento` adds to a bento, without building one: the generated bentofile with
uv.lock's pins, and clear errors. The built bento itself is served in
test_service_http.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from serving.bento import BentoError, pinned_requirements, write_bentofile

ROOT = Path(__file__).resolve().parents[1]


def test_generated_bentofile_pins_the_lock(tmp_path):
    lines = pinned_requirements(ROOT)
    assert "mlflow" not in " ".join(lines)  # the bento serves its snapshot: no MLflow
    config = yaml.safe_load(write_bentofile(tmp_path, ROOT, lines).read_text())
    assert config["python"]["lock_packages"] is False
    packages = config["python"]["packages"]
    assert any(p.startswith("lightgbm==") for p in packages)
    assert not any(p.startswith("bentoml") for p in packages)  # BentoML adds its own pin


def test_no_lock_is_a_clear_error(tmp_path):
    with pytest.raises(BentoError, match=r"no uv\.lock"):
        pinned_requirements(tmp_path)
