"""Every notebook in notebooks/ runs end to end on small synthetic data, and is committed
without outputs (issue 6).

Each notebook is executed by papermill in a real Jupyter kernel (the venv's python3
kernel) against its own empty data home and MLflow SQLite store: the notebook generates
the data itself, as on a fresh clone. A cell that raises fails the test. The small-data
parameters go in through papermill, after the cell tagged ``parameters``.
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
CUSTOMER_MODEL = {
    **SMALL,
    "N_TRAIN_CUTOFFS": 2,
    "FIRST_CHAMPION_PARAMS": {"n_estimators": 100},
    "CHALLENGER_PARAMS": {"n_estimators": 100, "num_leaves": 7, "min_child_samples": 10},
}
PARAMETERS: dict[str, dict[str, object]] = {
    "explore_data.ipynb": SMALL,
    "retrain_churn.ipynb": CUSTOMER_MODEL,
    "retrain_channel.ipynb": CUSTOMER_MODEL,
    "retrain_recommender.ipynb": {
        **SMALL,
        "FIRST_CHAMPION_PARAMS": {"ranker_params": {"n_estimators": 50}},
        "CHALLENGER_PARAMS": {"ranker_params": {"n_estimators": 50, "num_leaves": 7}},
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


def _with_checkout_check(nb) -> None:
    """Append a cell checking the kernel imports this checkout's code (not an installed
    copy), after checking the notebook has the one cell papermill injects after."""
    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "a notebook has one cell tagged 'parameters'"
    check = (
        "import pathlib as _pathlib, features as _features\n"
        f"assert _pathlib.Path(_features.__file__).resolve().is_relative_to({str(ROOT)!r}), "
        "_features.__file__"
    )
    nb.cells.append(nbformat.v4.new_code_cell(check))


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
    """Run the notebook with papermill, as a data scientist would (``papermill IN OUT -p
    NAME VALUE``): the small-data parameters in a cell after the one tagged
    ``parameters``; a cell that raises fails the test, naming it."""
    import papermill

    nb = nbformat.read(path, as_version=4)
    _with_checkout_check(nb)
    source = cwd / path.name
    nbformat.write(nb, source)
    done = papermill.execute_notebook(
        str(source),
        str(cwd / f"{path.stem}.out.ipynb"),
        parameters=PARAMETERS[path.name],
        kernel_name="python3",
        cwd=str(cwd),  # the kernel's working directory
        execution_timeout=CELL_TIMEOUT,
        progress_bar=False,
    )
    injected = [c for c in done.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1
    return done


@pytest.mark.slow
def test_explore_data_notebook_runs(kernel_env, tmp_path):
    _execute(NOTEBOOKS / "explore_data.ipynb", tmp_path)
    assert (kernel_env / "store" / "events").is_dir()  # made its own synthetic data


@pytest.mark.slow
@pytest.mark.parametrize(
    ("notebook", "model", "gate_metric"),
    [
        ("retrain_churn.ipynb", "churn", "test_average_precision"),
        ("retrain_channel.ipynb", "next_best_channel", "test_accuracy"),  # issue 19
        ("retrain_recommender.ipynb", "recommender", "test_ndcg_at_10"),  # issue 19
    ],
)
def test_retrain_notebook_runs(kernel_env, tmp_path, notebook, model, gate_metric):
    from features.settings import get_settings
    from training.model_registry import list_models

    _execute(NOTEBOOKS / notebook, tmp_path)
    versions = list_models(get_settings(), model)
    # v1 is the first champion the notebook trained; v2 the challenger, through the gate.
    assert [v.version for v in versions] == [2, 1]
    assert sum("champion" in v.aliases for v in versions) == 1
    assert versions[0].reason.startswith(f"v2 {gate_metric}")
