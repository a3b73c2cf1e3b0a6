"""Every notebook in notebooks/ runs end to end on small synthetic data, and is committed
without outputs (issue 6).

Each notebook is executed by a real Jupyter kernel (nbclient, the venv's python3 kernel)
against its own empty data home and MLflow SQLite store: the notebook generates the
data itself, as on a fresh clone. A cell that raises fails the test. Parameters are
injected after the cell tagged ``parameters``, as papermill does.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
CELL_TIMEOUT = 600  # seconds per cell; CI has 2 cores

# 600 customers x 400 days covers the churn job's default windows (60-day horizon, 90-day
# lookback) with two training cutoffs; 100 trees keep each fit to a few seconds.
SMALL = {"SYNTH_CUSTOMERS": 600, "SYNTH_DAYS": 400}
PARAMETERS: dict[str, dict[str, object]] = {
    "explore_data.ipynb": SMALL,
    "retrain_churn.ipynb": {
        **SMALL,
        "N_TRAIN_CUTOFFS": 2,
        "FIRST_CHAMPION_PARAMS": {"n_estimators": 100},
        "CHALLENGER_PARAMS": {"n_estimators": 100, "num_leaves": 7, "min_child_samples": 10},
    },
}


def _notebooks() -> list[Path]:
    return sorted(NOTEBOOKS.glob("*.ipynb"))


def test_every_notebook_is_executed_by_the_tests():
    names = {p.name for p in _notebooks()}
    assert {"explore_data.ipynb", "retrain_churn.ipynb"} <= names
    assert names == set(PARAMETERS), "give each notebook its small-data parameters here"


@pytest.mark.parametrize("path", _notebooks(), ids=lambda p: p.stem)
def test_notebook_is_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "python3"
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name} cell {i} has outputs: strip them"
            assert cell.execution_count is None, f"{path.name} cell {i} has an execution count"
        assert "attachments" not in cell or not cell.attachments


def test_python3_kernel_is_this_venvs_python():
    from jupyter_client.manager import KernelManager

    assert KernelManager(kernel_name="python3").format_kernel_cmd()[0] == sys.executable


def _inject(nb, values: dict[str, object]) -> None:
    """A cell setting ``values`` right after the one tagged ``parameters`` (papermill's way),
    which also checks the kernel imports the code under test."""
    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "a notebook has one cell tagged 'parameters'"
    lines = [f"{name} = {value!r}" for name, value in values.items()]
    lines += [
        "import pathlib as _pathlib, features as _features",
        f"assert _pathlib.Path(_features.__file__).resolve().is_relative_to({str(ROOT)!r}), "
        "_features.__file__",
    ]
    cell = nbformat.v4.new_code_cell("\n".join(lines))
    cell.metadata["tags"] = ["injected-parameters"]
    nb.cells.insert(tagged[0] + 1, cell)


@pytest.fixture
def kernel_env(tmp_path, monkeypatch):
    """The kernel's environment: an empty data home, its own MLflow store, headless plots,
    and this checkout's packages (CI installs it editable; a worktree may not be)."""
    home = tmp_path / "omni_home"
    monkeypatch.setenv("OMNI_HOME", str(home))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{home / 'mlflow.db'}")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    import features

    if not Path(features.__file__).resolve().is_relative_to(ROOT):
        path = os.environ.get("PYTHONPATH")
        monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), path])))
    return home


def _execute(path: Path, cwd: Path) -> nbformat.NotebookNode:
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    _inject(nb, PARAMETERS[path.name])
    client = NotebookClient(
        nb,
        kernel_name="python3",
        timeout=CELL_TIMEOUT,
        resources={"metadata": {"path": str(cwd)}},  # the kernel's working directory
    )
    client.execute()  # raises CellExecutionError naming the failing cell
    return nb


@pytest.mark.slow
def test_explore_data_notebook_runs(kernel_env, tmp_path):
    _execute(NOTEBOOKS / "explore_data.ipynb", tmp_path)
    assert (kernel_env / "store" / "events").is_dir()  # made its own synthetic data


@pytest.mark.slow
def test_retrain_churn_notebook_runs(kernel_env, tmp_path):
    from features.settings import get_settings
    from training.model_registry import list_models

    _execute(NOTEBOOKS / "retrain_churn.ipynb", tmp_path)
    versions = list_models(get_settings(), "churn")
    # v1 is the first champion the notebook trained; v2 the challenger, through the gate.
    assert [v.version for v in versions] == [2, 1]
    assert sum("champion" in v.aliases for v in versions) == 1
    assert versions[0].reason.startswith("v2 test_average_precision")
