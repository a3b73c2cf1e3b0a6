"""MLflow tracking shared by every training job: where runs go and what each run logs.

``import mlflow`` takes seconds, so it happens inside functions: importing this module
has no side effects and costs nothing for the CLI's ``--help``. Each job gets one
experiment (``omni-<job>``); runs log params, metrics of the model and of every
baseline, JSON / figure artifacts, the feature list and cutoffs, and a fingerprint of
the events read.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import hashlib
import json
import sys
from collections.abc import Iterator, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from features.settings import Settings

if TYPE_CHECKING:
    import mlflow
    import pandas as pd
    from matplotlib.figure import Figure

EXPERIMENT_PREFIX = "omni-"
BASELINE_PREFIX = "baseline_"
RUNTIME_LIBRARIES: tuple[str, ...] = (
    "numpy",
    "pandas",
    "pyarrow",
    "scipy",
    "scikit-learn",
    "lightgbm",
    "implicit",
    "polars",
    "threadpoolctl",
    "cloudpickle",  # pyfunc models are pickled with it: the loading side needs the same one
    "mlflow",
)
"""Libraries a logged model needs at prediction time (pinned by :func:`pip_requirements`)."""


def experiment_name(job: str) -> str:
    """The experiment of a training job, e.g. ``omni-churn``."""
    return f"{EXPERIMENT_PREFIX}{job}"


def sqlite_path(tracking_uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` tracking URI (None for other stores)."""
    prefix = "sqlite:///"
    if not tracking_uri.startswith(prefix) or tracking_uri.endswith(":memory:"):
        return None
    return Path(tracking_uri[len(prefix) :].split("?", 1)[0]).expanduser().resolve()


def use_tracking(settings: Settings) -> str:
    """Point MLflow at ``settings.tracking_uri`` (creating a local SQLite folder); return it."""
    import mlflow

    db = sqlite_path(settings.tracking_uri)
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(settings.tracking_uri)
    return settings.tracking_uri


def _artifact_location(tracking_uri: str, name: str) -> str | None:
    """Artifacts of a local SQLite store live beside it, not in ``./mlruns`` of the cwd."""
    db = sqlite_path(tracking_uri)
    return None if db is None else (db.parent / "mlartifacts" / name).as_uri()


def ensure_experiment(settings: Settings, job: str) -> str:
    """Id of the job's experiment, created (or restored) if needed."""
    import mlflow
    from mlflow.exceptions import MlflowException

    uri = use_tracking(settings)
    client = mlflow.MlflowClient(uri)
    name = experiment_name(job)
    exp = client.get_experiment_by_name(name)
    if exp is None:
        try:
            return client.create_experiment(name, artifact_location=_artifact_location(uri, name))
        except MlflowException:  # another job created it meanwhile
            exp = client.get_experiment_by_name(name)
            if exp is None:
                raise
    if exp.lifecycle_stage == "deleted":
        client.restore_experiment(exp.experiment_id)
    return exp.experiment_id


@contextlib.contextmanager
def tracked_run(
    settings: Settings,
    job: str,
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, Any] | None = None,
    run_name: str | None = None,
) -> Iterator[mlflow.ActiveRun]:
    """One MLflow run of ``job`` in its experiment; failed if the block raises.

    Logs ``params`` and tags (``omni.job`` plus ``tags``) up front.
    """
    import mlflow

    experiment_id = ensure_experiment(settings, job)
    all_tags = {"omni.job": job, **{k: str(v) for k, v in (tags or {}).items()}}
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=all_tags) as run:
        if params:
            mlflow.log_params({k: param_text(v) for k, v in params.items()})
        yield run


def log_metrics(metrics: Mapping[str, float], prefix: str = "", step: int | None = None) -> None:
    """Log numbers under ``prefix + name`` (numpy scalars are fine)."""
    import mlflow

    mlflow.log_metrics({f"{prefix}{k}": float(v) for k, v in metrics.items()}, step=step)


def log_evaluation(
    model: Mapping[str, float], baselines: Mapping[str, Mapping[str, float]] | None = None
) -> dict[str, float]:
    """Log the model's metrics as named and each baseline's as ``baseline_<name>_<metric>``.

    ``log_evaluation({"test_roc_auc": .81}, {"recency": {"test_roc_auc": .74}})`` logs
    ``test_roc_auc`` and ``baseline_recency_test_roc_auc``. Returns everything logged.
    """
    logged = {k: float(v) for k, v in model.items()}
    for name, metrics in (baselines or {}).items():
        logged.update({f"{BASELINE_PREFIX}{name}_{k}": float(v) for k, v in metrics.items()})
    log_metrics(logged)
    return logged


def to_json(obj: Any) -> str:
    """Stable JSON (sorted keys) that also takes numpy scalars / arrays, timestamps, paths."""
    return json.dumps(obj, indent=2, sort_keys=True, default=_jsonable, allow_nan=True)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return value.tolist()
    if hasattr(value, "isoformat"):  # pandas Timestamp
        return value.isoformat()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def log_json(obj: Any, artifact_file: str) -> None:
    """Write ``obj`` as a JSON artifact (e.g. ``"eval/per_segment.json"``)."""
    import mlflow

    mlflow.log_text(to_json(obj), artifact_file)


def new_figure(nrows: int = 1, ncols: int = 1, **kwargs: Any) -> tuple[Figure, Any]:
    """A headless matplotlib figure and its axes.

    Built without pyplot, so no display, no backend choice and no global figure state.
    """
    from matplotlib.figure import Figure

    fig = Figure(**kwargs)
    return fig, fig.subplots(nrows, ncols)


def log_figure(fig: Figure, artifact_file: str) -> None:
    """Save a figure as a run artifact (e.g. ``"plots/roc.png"``) and release it."""
    import mlflow

    mlflow.log_figure(fig, artifact_file)
    if "matplotlib.pyplot" in sys.modules:  # a pyplot-managed figure stays open otherwise
        sys.modules["matplotlib.pyplot"].close(fig)


def log_features(features: Sequence[str], cutoffs: Mapping[str, Any]) -> None:
    """Record the feature list (artifact ``features.json``) and the cutoffs (params too).

    ``cutoffs`` maps a role to a date or a list of dates, e.g.
    ``{"train": [...], "test": "2025-10-01", "horizon_days": 60}``.
    """
    import mlflow

    log_json({"features": list(features), "cutoffs": dict(cutoffs)}, "features.json")
    params = {"n_features": len(features)}
    params.update({f"cutoff_{k}": param_text(v) for k, v in cutoffs.items()})
    mlflow.log_params(params)


def param_text(value: Any) -> str:
    """A param / tag value as text: dates in ISO format, lists comma-separated."""
    if isinstance(value, str):
        return value
    if isinstance(value, list | tuple):
        return ",".join(param_text(v) for v in value)
    if isinstance(value, dt.datetime | dt.date) or hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def dataset_fingerprint(frame: pd.DataFrame) -> str:
    """A fast, stable 16-hex-digit hash of a frame's rows and column names.

    Independent of row order and column order (the same events read from a store laid
    out differently, or in another order, give the same fingerprint); any change to a
    value, a row, or a column name changes it. Rows are hashed with
    ``pandas.util.hash_pandas_object`` (SipHash with a fixed key), timestamps at
    microsecond resolution; the sorted row hashes are digested with BLAKE2b.
    About 0.5-0.7 s of CPU for the 1.6M Complete Journey events (9-15 columns; string id
    columns cost most), so hash the columns the job read rather than more.
    """
    import numpy as np
    import pandas as pd

    columns = sorted(map(str, frame.columns))
    frame = frame.set_axis(list(map(str, frame.columns)), axis=1)[columns]
    for name in columns:
        if frame[name].dtype.kind == "M":  # naive or tz-aware timestamps
            frame = frame.assign(**{name: frame[name].dt.as_unit("us")})
    digest = hashlib.blake2b(digest_size=8)
    digest.update(json.dumps([columns, len(frame)]).encode())
    if len(frame) and columns:
        rows = pd.util.hash_pandas_object(frame, index=False).to_numpy()
        digest.update(np.sort(rows).tobytes())
    return digest.hexdigest()


def log_dataset(frame: pd.DataFrame, name: str = "events") -> str:
    """Log a frame's fingerprint (tag and param ``<name>_fingerprint``), rows and time range.

    Returns the fingerprint, e.g. to put in the holdout definition of a registered model.
    """
    import mlflow

    fingerprint = dataset_fingerprint(frame)
    mlflow.set_tag(f"{name}_fingerprint", fingerprint)
    params = {f"{name}_fingerprint": fingerprint, f"{name}_rows": len(frame)}
    if "ts" in frame.columns and len(frame):
        params[f"{name}_first_ts"] = frame["ts"].min().isoformat()
        params[f"{name}_last_ts"] = frame["ts"].max().isoformat()
    mlflow.log_params(params)
    return fingerprint


def pip_requirements() -> list[str]:
    """Pinned requirements (``name==version``) of the runtime libraries that are installed.

    Read from package metadata (milliseconds), so logging a model never falls back to
    MLflow's requirement inference, which loads the model and takes many seconds.
    """
    return list(_pins())


@functools.cache
def _pins() -> tuple[str, ...]:
    pins = []
    for name in RUNTIME_LIBRARIES:
        try:
            pins.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return tuple(pins)
