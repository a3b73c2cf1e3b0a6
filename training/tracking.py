"""MLflow tracking shared by every training job: where runs go and what each run logs.

``import mlflow`` takes seconds, so it happens inside functions: importing this module
has no side effects and costs nothing for the CLI's ``--help``. Each job gets one
experiment (``omni-<job>``); runs log params, metrics of the model and of every
baseline, JSON / figure artifacts, the feature list and cutoffs, and a fingerprint of
the events read.

Talking to a tracking server: :func:`use_tracking` gives MLflow short HTTP timeouts and
few retries (``features.settings.MLFLOW_HTTP_DEFAULTS``, where the user set none) and
first checks, in a few seconds, that an ``http(s)://`` server answers at all; one that
does not is a one-line :class:`RegistryUnreachable`. Each run records the host and pid
that run it, so that a later run can mark FAILED the runs whose process was killed
(:func:`fail_abandoned_runs`) without touching a live one.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import hashlib
import json
import logging
import os
import re
import socket
import stat
import sys
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from features.atomic import pid_alive
from features.settings import MLFLOW_HTTP_DEFAULTS, Settings
from training.job_names import MODEL_PURPOSES

if TYPE_CHECKING:
    import mlflow
    import pandas as pd
    from matplotlib.figure import Figure

EXPERIMENT_PREFIX = "omni-"
BASELINE_PREFIX = "baseline_"
TAG_HOST = "omni.host"
TAG_PID = "omni.pid"
PROBE_TIMEOUT_S = 3.0
"""How long :func:`check_reachable` waits for a tracking server to connect and answer."""
log = logging.getLogger("omni.tracking")


class RegistryUnreachable(ValueError):
    """The MLflow tracking server / registry did not answer (one line: where, and why).

    A ValueError like the other user-facing errors, so commands exit 2 with the message."""


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


NOTE = "mlflow.note.content"
"""The tag MLflow shows as an experiment's or a run's description."""


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
    """Point MLflow at ``settings.tracking_uri`` (creating a local SQLite folder) with short
    HTTP timeouts, after checking that a server answers (:func:`check_reachable`)."""
    for name, value in MLFLOW_HTTP_DEFAULTS.items():
        os.environ.setdefault(name, value)
    check_reachable(settings.tracking_uri)
    import mlflow

    db = sqlite_path(settings.tracking_uri)
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(settings.tracking_uri)
    return settings.tracking_uri


def shown_uri(uri: str) -> str:
    """The URI without a password (``http://user:secret@host`` -> ``http://user@host``)."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = f"{parts.username}@" if parts.username else ""
    return urlunsplit(parts._replace(netloc=user + netloc))


@functools.cache
def check_reachable(uri: str, timeout: float = PROBE_TIMEOUT_S) -> None:
    """For an ``http(s)://`` tracking URI: does anything answer HTTP there within
    ``timeout`` seconds? Any answer counts (even 401 or 404: MLflow reports those
    itself); no connection or no answer is a :class:`RegistryUnreachable`. Checked once
    per process and URI; other stores (SQLite, files, Databricks) are not checked."""
    if not uri.lower().startswith(("http://", "https://")):
        return
    import requests

    t0 = time.perf_counter()
    try:
        requests.get(f"{uri.rstrip('/')}/health", timeout=(timeout, timeout))
    except requests.exceptions.SSLError:
        return  # it answered; MLflow has its own TLS settings (MLFLOW_TRACKING_INSECURE_TLS)
    except requests.RequestException as exc:
        raise RegistryUnreachable(
            f"cannot reach the MLflow registry at {shown_uri(uri)} ({_why(exc)} after "
            f"{time.perf_counter() - t0:.1f} s; check MLFLOW_TRACKING_URI)"
        ) from None


def _why(exc: BaseException) -> str:
    """A few words on why a request failed: the OS's reason when there is one."""
    import requests

    if isinstance(exc, requests.Timeout):
        return "no answer"
    found = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", str(exc))
    return found.group(1).strip().lower() if found else type(exc).__name__


def unreachable_error(exc: BaseException, uri: str) -> RegistryUnreachable | None:
    """The one-line error for an MLflow exception that came from not reaching the server
    (connection refused, timeout, retries exhausted), else None."""
    import requests

    cause = exc.__cause__ or exc.__context__
    if not isinstance(cause, requests.RequestException):
        return None
    return RegistryUnreachable(
        f"lost the MLflow registry at {shown_uri(uri)} ({_why(cause)}; check MLFLOW_TRACKING_URI)"
    )


@contextlib.contextmanager
def registry_errors(settings: Settings) -> Iterator[None]:
    """Inside the block, MLflow failing to reach its server (e.g. it went away mid-way)
    becomes a :class:`RegistryUnreachable` instead of a chain of tracebacks."""
    try:
        yield
    except Exception as exc:
        errors = sys.modules.get("mlflow.exceptions")  # loaded if MLflow was used
        if errors is not None and isinstance(exc, errors.MlflowException):
            error = unreachable_error(exc, settings.tracking_uri)
            if error is not None:
                raise error from None
        raise


def _artifact_folder(tracking_uri: str, name: str) -> Path | None:
    """Artifacts of a local SQLite store live beside it, not in ``./mlruns`` of the cwd."""
    db = sqlite_path(tracking_uri)
    return None if db is None else db.parent / "mlartifacts" / name


def _artifact_location(tracking_uri: str, name: str) -> str | None:
    folder = _artifact_folder(tracking_uri, name)
    return None if folder is None else folder.as_uri()


def ensure_experiment(settings: Settings, job: str) -> str:
    """Id of the job's experiment, created (or restored) if needed."""
    import mlflow
    from mlflow.exceptions import MlflowException

    uri = use_tracking(settings)
    client = mlflow.MlflowClient(uri)
    name = experiment_name(job)
    exp = client.get_experiment_by_name(name)
    note = {NOTE: MODEL_PURPOSES[job]} if job in MODEL_PURPOSES else {}
    if exp is None:
        try:
            location = _artifact_location(uri, name)
            return client.create_experiment(name, artifact_location=location, tags=note)
        except MlflowException:  # another job created it meanwhile
            exp = client.get_experiment_by_name(name)
            if exp is None:
                raise
    if exp.lifecycle_stage == "deleted":
        client.restore_experiment(exp.experiment_id)
    if note and NOTE not in exp.tags:  # an experiment made before descriptions
        client.set_experiment_tag(exp.experiment_id, NOTE, note[NOTE])
    return exp.experiment_id


def run_name(model: str, split: Any) -> str:
    """A run's name in the MLflow UI: the model, its test cutoff and horizon, e.g.
    ``churn test 2017-10-03 60d``."""
    return f"{model} test {split.test:%Y-%m-%d} {split.horizon_days}d"


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
    for run_id in fail_abandoned_runs(settings):
        log.warning("marked MLflow run %s FAILED: the process running it had ended", run_id)
    all_tags = {
        "omni.job": job,
        TAG_HOST: socket.gethostname(),
        TAG_PID: str(os.getpid()),
        **{k: str(v) for k, v in (tags or {}).items()},
    }
    try:
        with mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=all_tags) as run:
            if params:
                mlflow.log_params({k: param_text(v) for k, v in params.items()})
            yield run
    finally:
        local = _artifact_folder(settings.tracking_uri, experiment_name(job))
        if local is not None:
            owner_only(local)


def owner_only(folder: Path) -> None:
    """Take group and other permissions off everything under ``folder``: MLflow copies a
    model's code files with their modes in the source tree (0644), whatever the umask."""
    for root, dirs, files in os.walk(folder):
        for name in (*dirs, *files):
            path = Path(root, name)
            mode = path.lstat().st_mode
            if mode & 0o077 and not stat.S_ISLNK(mode):
                path.chmod(stat.S_IMODE(mode) & 0o700)


def fail_abandoned_runs(settings: Settings) -> list[str]:
    """Mark FAILED the RUNNING runs of our experiments whose process has ended (started on
    this host, pid gone: e.g. killed mid-way). Runs of live processes, of other hosts and
    runs without host and pid tags are left alone. Returns the run ids marked."""
    import mlflow

    client = mlflow.MlflowClient(use_tracking(settings))
    experiments = client.search_experiments(filter_string=f"name LIKE '{EXPERIMENT_PREFIX}%'")
    if not experiments:
        return []
    host = socket.gethostname()
    running = client.search_runs(
        [e.experiment_id for e in experiments],
        filter_string=f"attributes.status = 'RUNNING' and tags.`{TAG_HOST}` = '{host}'",
    )
    marked = []
    for run in running:
        pid = run.data.tags.get(TAG_PID, "")
        if pid.isdigit() and not pid_alive(int(pid)):
            client.set_tag(run.info.run_id, "omni.abandoned", f"process {pid} on {host} ended")
            client.set_terminated(run.info.run_id, status="FAILED")
            marked.append(run.info.run_id)
    return marked


def log_metrics(metrics: Mapping[str, float], prefix: str = "", step: int | None = None) -> None:
    """Log numbers under ``prefix + name`` (numpy scalars are fine)."""
    import mlflow

    mlflow.log_metrics({f"{prefix}{k}": float(v) for k, v in metrics.items()}, step=step)


def log_metric_steps(
    frame: pd.DataFrame, step: str, prefix: str = "", suffix: str = ""
) -> list[str]:
    """Log every column of ``frame`` but ``step`` as one metric, ``prefix + column +
    suffix``, with one value per row at ``step=row[step]``, so that the MLflow UI charts
    it against the steps (e.g. a metric against k). One batch per 1,000 values (MLflow's
    limit), not a request per value. Returns the metric names."""
    import mlflow
    from mlflow.entities import Metric

    run_id = mlflow.active_run().info.run_id
    now = int(time.time() * 1000)
    steps = frame[step].to_numpy().astype(int).tolist()
    names = [str(c) for c in frame.columns if c != step]
    metrics = [
        Metric(f"{prefix}{name}{suffix}", value, now, at)
        for name in names
        for at, value in zip(steps, frame[name].to_numpy(float).tolist(), strict=True)
    ]
    client = mlflow.MlflowClient()
    for start in range(0, len(metrics), 1000):
        client.log_batch(run_id, metrics=metrics[start : start + 1000])
    return [f"{prefix}{name}{suffix}" for name in names]


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


def log_dataset(
    frame: pd.DataFrame,
    name: str = "events",
    source: Path | None = None,
    cutoffs: Mapping[str, str] | None = None,
) -> str:
    """Log a frame's fingerprint (tag and param ``<name>_fingerprint``), rows and time range,
    and the frame as the run's MLflow dataset input (``mlflow.log_input``: this name, the
    fingerprint as digest, ``source`` as where it was read, the ``cutoffs`` as its tags), so
    the run page and the runs table show what the run trained on.

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
    tags = {"rows": str(len(frame)), **(cutoffs or {})}
    mlflow.log_input(_dataset(name, fingerprint, source), context="training", tags=tags)
    return fingerprint


def _dataset(name: str, digest: str, source: Path | None):
    """An MLflow dataset of metadata only: the data stays in the store, not in MLflow."""
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    uri = (source or Path(".")).resolve().as_uri()
    with warnings.catch_warnings():  # MLflow registers its local source twice ("" and
        warnings.simplefilter("ignore", UserWarning)  # "file") and warns that it picked one
        return MetaDataset(resolve_dataset_source(uri), name=name, digest=digest)


def log_lightgbm_params(estimator: Any) -> None:
    """Log every hyperparameter of a LightGBM scikit-learn estimator, defaults included,
    as ``lgbm_<name>`` params: two runs compare on all of them in the MLflow UI."""
    import mlflow

    params = estimator.get_params()
    mlflow.log_params({f"lgbm_{k}": param_text(v) for k, v in sorted(params.items())})


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


def quiet_mlflow() -> None:
    """MLflow's INFO chatter (uv detection, signature validation) hides our progress lines;
    its warnings still show."""
    import logging

    import mlflow  # noqa: F401  (importing mlflow configures its loggers; set the level after)

    logging.getLogger("mlflow").setLevel(logging.WARNING)
