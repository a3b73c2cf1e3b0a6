"""Running the real `omni` CLI from tests."""

from __future__ import annotations

from pathlib import Path


def omni(*args: str, home: Path, timeout: float = 600, **env: str):
    """Run the real CLI in a subprocess against ``home`` (its own MLflow SQLite file)."""
    import os
    import subprocess
    import sys

    environ = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI",)}
    environ |= {"OMNI_HOME": str(home), "COLUMNS": "120", **env}
    return subprocess.run(
        [sys.executable, "-m", "serving.cli", *args],
        capture_output=True,
        text=True,
        env=environ,
        timeout=timeout,
        check=False,
    )
