"""One settings object for paths, URIs and seeds. Environment variables override defaults.

Nothing is read or created at import time: call :func:`get_settings` when a command runs.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

ENV_PREFIX = "OMNI_"
MAX_BODY_BYTES = 1_048_576
"""Largest request body the service reads (``OMNI_MAX_BODY_BYTES``); larger ones get 413."""
KEEP_SNAPSHOTS = 3
"""Online snapshots kept (``OMNI_KEEP_SNAPSHOTS``), besides any a running service uses."""
KEEP_SCORES = 2
"""Versions of a batch-scoring output kept (``OMNI_KEEP_SCORES``): the newest and the one
before, which a reader that started on it can finish."""
LIVE_MAX_BEHIND = 2_000
"""Live events a service worker takes at most before its online state has applied them
(``OMNI_LIVE_MAX_BEHIND``): past it, POST /events waits for the next refresh. Smaller
keeps answers fresher, larger takes events faster (a round covers more batches and pays
its fixed work less often). Measured on 2 cores with batches of 1,000 (docs/performance.md,
stop 42, 6 runs each, alternated): beside back-to-back reads, 2,000 took 3,870-5,220
events/s (4,740-5,220 outside a slower half-hour) with events visible within 0.47-0.84 s (p99,
paced reads included); 2,500 took 5,630-5,970 events/s visible within 0.74-0.92 s, but
beside paced reads 4,420-5,170 events/s, once visible only after 1.33 s; 3,000 (stop 41)
took 5,520-6,060 within 0.81-1.07 s. The default keeps p99 under a second."""
ACCESS_LOG_EVERY = 100
"""The service logs every answer of 400 or more and every ``ACCESS_LOG_EVERY``-th other
one (``OMNI_ACCESS_LOG_EVERY``; 1 logs them all, as BentoML does). A line per request cost
a bare service 19% of its throughput on 2 cores; the request metrics count every one."""
REC_LOG_MAX_MB = 256
"""Largest size of the recommendation log (``OMNI_REC_LOG_MAX_MB``, see
:mod:`serving.recommendation_log`): its oldest files go past it. Measured: 8 bytes per
item served (Parquet, zstd; 100,000 answers of 10 items), so 256 MB holds about three
million answers of ten items."""
MLFLOW_HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
}
"""MLflow's own HTTP settings where the user set none (MLflow's defaults, 120 s and 7
retries with backoff, make an unreachable server take minutes per call)."""


@dataclass(frozen=True)
class Settings:
    """Where data lives, where MLflow tracks, and the default seed.

    ``home`` holds the raw sources, the events store, feature tables and the
    default MLflow SQLite file. Override with ``OMNI_HOME``; MLflow with
    ``MLFLOW_TRACKING_URI``; seed with ``OMNI_SEED``; the Spark master for
    ``--engine spark`` with ``OMNI_SPARK_MASTER`` (None: local mode, or spark-submit's).
    ``snapshot`` (``OMNI_SNAPSHOT``): the online snapshot the service loads (default: the
    newest in the home). ``api_token`` (``OMNI_API_TOKEN``): when set, the service's scoring
    endpoints require
    ``Authorization: Bearer <token>``. ``max_body_bytes`` (``OMNI_MAX_BODY_BYTES``): larger
    request bodies get 413 from the service, before they are read. ``keep_snapshots``
    (``OMNI_KEEP_SNAPSHOTS``) / ``keep_scores`` (``OMNI_KEEP_SCORES``): how many online
    snapshots / batch-scoring outputs to keep. ``online_store`` (``OMNI_ONLINE_STORE``):
    None for the embedded live loop (journal on local disk, one worker), or a
    ``redis://`` URL whose Redis every worker shares (issue 17); keys start with
    ``online_namespace`` (``OMNI_ONLINE_NAMESPACE``, default ``omni``).
    ``live_max_behind`` (``OMNI_LIVE_MAX_BEHIND``): see :data:`LIVE_MAX_BEHIND`.
    ``access_log_every`` (``OMNI_ACCESS_LOG_EVERY``): see :data:`ACCESS_LOG_EVERY`.
    ``rec_log_max_mb`` (``OMNI_REC_LOG_MAX_MB``): see :data:`REC_LOG_MAX_MB`.
    ``gc_mode`` (``OMNI_GC``): ``idle`` (default) or ``auto``, see :mod:`serving.collector`.
    ``tracing`` (``OMNI_TRACING=1``): OpenTelemetry spans for the service's requests, for an
    operator who exports traces (BentoML's ``tracing`` config); off, requests make none.
    ``gate_min_improvement`` (``OMNI_GATE_MIN_IMPROVEMENT``): how much a new model must
    beat the champion's gate metric by to be promoted (absolute, default 0: any gain).
    """

    home: Path
    tracking_uri: str
    seed: int = 42
    max_identity_component: int = 25
    spark_master: str | None = None
    api_token: str | None = field(default=None, repr=False)  # never printed
    snapshot: Path | None = None
    max_body_bytes: int = MAX_BODY_BYTES
    keep_snapshots: int = KEEP_SNAPSHOTS
    keep_scores: int = KEEP_SCORES
    online_store: str | None = field(default=None, repr=False)  # may hold a password
    online_namespace: str = "omni"
    live_max_behind: int = LIVE_MAX_BEHIND
    access_log_every: int = ACCESS_LOG_EVERY
    rec_log_max_mb: int = REC_LOG_MAX_MB
    gc_mode: str = "idle"
    tracing: bool = False
    gate_min_improvement: float = 0.0

    @property
    def raw_dir(self) -> Path:
        return self.home / "raw"

    @property
    def store_dir(self) -> Path:
        return self.home / "store"

    @property
    def events_dir(self) -> Path:
        return self.store_dir / "events"

    @property
    def quarantine_dir(self) -> Path:
        return self.home / "quarantine"

    @property
    def journal_dir(self) -> Path:
        """Live events taken by the service, until compacted into the store."""
        return self.home / "journal"

    @property
    def recommendations_dir(self) -> Path:
        """The recommendation log: what /recommend served (serving/recommendation_log.py)."""
        return self.home / "recommendations"

    @property
    def journeys_dir(self) -> Path:
        """Journey declarations, the contact policy, the decision log and the outbox
        (docs/journeys.md)."""
        return self.home / "journeys"

    @property
    def features_dir(self) -> Path:
        return self.home / "features"

    def table_path(self, table: str) -> Path:
        """Path of a dimension table in the store."""
        return self.store_dir / f"{table}.parquet"

    def with_home(self, home: Path | str) -> Settings:
        """Same settings with another home; the default tracking URI follows the home."""
        home = Path(home).expanduser().resolve()
        default_uri = _sqlite_uri(self.home)
        uri = _sqlite_uri(home) if self.tracking_uri == default_uri else self.tracking_uri
        return replace(self, home=home, tracking_uri=uri)


def _sqlite_uri(home: Path) -> str:
    return f"sqlite:///{home / 'mlflow.db'}"


def get_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build settings from defaults, overridden by the settings file (``OMNI_CONFIG``, else
    ``omni.toml`` in the home, if there), overridden by environment variables. A bad value
    from the file is a ValueError that names the file."""
    env = os.environ if env is None else env
    from_file, path = config_file_env(env)
    try:
        return _settings({**from_file, **env})
    except ValueError as exc:
        if any(name in str(exc) and name not in env for name in from_file):
            raise ValueError(f"{exc} (set in {path})") from None
        raise


def _settings(env: Mapping[str, str]) -> Settings:
    home = Path(env.get(f"{ENV_PREFIX}HOME", "omni_home")).expanduser().resolve()
    tracking_uri = env.get("MLFLOW_TRACKING_URI") or _sqlite_uri(home)
    try:
        seed = int(env.get(f"{ENV_PREFIX}SEED", "42"))
        max_comp = int(env.get(f"{ENV_PREFIX}MAX_IDENTITY_COMPONENT", "25"))
    except ValueError as exc:
        raise ValueError(
            f"OMNI_SEED / OMNI_MAX_IDENTITY_COMPONENT must be integers: {exc}"
        ) from exc
    counts = {name: _at_least_one(env, name, default) for name, default in _COUNTS.items()}
    return Settings(
        home=home,
        tracking_uri=tracking_uri,
        seed=seed,
        max_identity_component=max_comp,
        spark_master=env.get(f"{ENV_PREFIX}SPARK_MASTER") or None,
        api_token=env.get(f"{ENV_PREFIX}API_TOKEN") or None,
        snapshot=Path(env[f"{ENV_PREFIX}SNAPSHOT"]) if env.get(f"{ENV_PREFIX}SNAPSHOT") else None,
        max_body_bytes=counts["MAX_BODY_BYTES"],
        keep_snapshots=counts["KEEP_SNAPSHOTS"],
        keep_scores=counts["KEEP_SCORES"],
        live_max_behind=counts["LIVE_MAX_BEHIND"],
        access_log_every=counts["ACCESS_LOG_EVERY"],
        rec_log_max_mb=counts["REC_LOG_MAX_MB"],
        gc_mode=_choice(env, "GC", ("idle", "auto"), "idle"),
        tracing=_flag(env, "TRACING"),
        gate_min_improvement=_non_negative(env, "GATE_MIN_IMPROVEMENT"),
        online_store=_online_store(env.get(f"{ENV_PREFIX}ONLINE_STORE") or None),
        online_namespace=env.get(f"{ENV_PREFIX}ONLINE_NAMESPACE") or "omni",
    )


ONLINE_SCHEMES = ("redis://", "rediss://", "unix://")


def _online_store(url: str | None) -> str | None:
    """``OMNI_ONLINE_STORE`` checked: unset (the embedded journal) or a Redis URL."""
    if url is None or url.startswith(ONLINE_SCHEMES):
        return url
    shown = url.split("@")[-1]  # never print a password
    raise ValueError(
        f"OMNI_ONLINE_STORE must be a Redis URL (redis://host:port/db, rediss://, unix://) "
        f"or unset for the embedded journal, got {shown!r}"
    )


_COUNTS = {
    "MAX_BODY_BYTES": MAX_BODY_BYTES,
    "KEEP_SNAPSHOTS": KEEP_SNAPSHOTS,
    "KEEP_SCORES": KEEP_SCORES,
    "LIVE_MAX_BEHIND": LIVE_MAX_BEHIND,
    "ACCESS_LOG_EVERY": ACCESS_LOG_EVERY,
    "REC_LOG_MAX_MB": REC_LOG_MAX_MB,
}


def _at_least_one(env: Mapping[str, str], name: str, default: int) -> int:
    """A count setting (``OMNI_<name>``) of 1 or more."""
    text = env.get(f"{ENV_PREFIX}{name}") or str(default)
    if not text.strip().isdigit() or int(text) < 1:
        raise ValueError(f"{ENV_PREFIX}{name} must be a whole number of at least 1, got {text!r}")
    return int(text)


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...], default: str) -> str:
    """A setting (``OMNI_<name>``) that is one of ``choices``."""
    text = (env.get(f"{ENV_PREFIX}{name}") or default).strip().lower()
    if text not in choices:
        raise ValueError(f"{ENV_PREFIX}{name} must be one of {', '.join(choices)}, got {text!r}")
    return text


def _non_negative(env: Mapping[str, str], name: str) -> float:
    """A number setting (``OMNI_<name>``) of 0 or more, 0 if unset."""
    text = (env.get(f"{ENV_PREFIX}{name}") or "0").strip()
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value >= 0 or value == float("inf"):
        raise ValueError(f"{ENV_PREFIX}{name} must be a number of 0 or more, got {text!r}")
    return value


def _flag(env: Mapping[str, str], name: str) -> bool:
    """An on/off setting (``OMNI_<name>``): 1/true/yes/on or 0/false/no/off, off if unset."""
    text = (env.get(f"{ENV_PREFIX}{name}") or "0").strip().lower()
    if text not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        raise ValueError(f"{ENV_PREFIX}{name} must be 1 or 0 (true / false), got {text!r}")
    return text in ("1", "true", "yes", "on")


CONFIG_ENV = f"{ENV_PREFIX}CONFIG"
CONFIG_NAME = "omni.toml"
FILE_KEYS = {
    "home": "OMNI_HOME",
    "mlflow_tracking_uri": "MLFLOW_TRACKING_URI",
    "seed": "OMNI_SEED",
    "max_identity_component": "OMNI_MAX_IDENTITY_COMPONENT",
    "spark_master": "OMNI_SPARK_MASTER",
    "api_token": "OMNI_API_TOKEN",
    "snapshot": "OMNI_SNAPSHOT",
    "max_body_bytes": "OMNI_MAX_BODY_BYTES",
    "keep_snapshots": "OMNI_KEEP_SNAPSHOTS",
    "keep_scores": "OMNI_KEEP_SCORES",
    "online_store": "OMNI_ONLINE_STORE",
    "online_namespace": "OMNI_ONLINE_NAMESPACE",
    "live_max_behind": "OMNI_LIVE_MAX_BEHIND",
    "access_log_every": "OMNI_ACCESS_LOG_EVERY",
    "rec_log_max_mb": "OMNI_REC_LOG_MAX_MB",
    "gc": "OMNI_GC",
    "tracing": "OMNI_TRACING",
    "gate_min_improvement": "OMNI_GATE_MIN_IMPROVEMENT",
}
"""A settings file's keys and the environment variable each stands for (the variable,
when set, wins)."""


def config_file_env(env: Mapping[str, str]) -> tuple[dict[str, str], Path | None]:
    """The settings file's values as environment variables, and its path: the file
    ``OMNI_CONFIG`` names (``omni --config``; it must exist), else ``omni.toml`` in the home
    if there is one. A key the file may not hold, or a value that is not a string, number
    or boolean, is a ValueError naming the file and the key."""
    named = env.get(CONFIG_ENV)
    if named:
        path = Path(named).expanduser()
        if not path.is_file():
            raise ValueError(f"{CONFIG_ENV} / --config: no settings file at {path}")
    else:
        home = Path(env.get(f"{ENV_PREFIX}HOME", "omni_home")).expanduser()
        path = home / CONFIG_NAME
        if not path.is_file():
            return {}, None
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{path}: not a readable TOML settings file: {exc}") from None
    out = {}
    for key, value in data.items():
        if key not in FILE_KEYS or (key == "home" and not named):
            known = ", ".join(k for k in FILE_KEYS if named or k != "home")
            raise ValueError(f"{path}: unknown setting {key!r} (known: {known})")
        if isinstance(value, bool):
            value = "1" if value else "0"
        elif not isinstance(value, str | int | float):
            raise ValueError(f"{path}: {key} must be a string, number or boolean")
        out[FILE_KEYS[key]] = str(value)
    return out, path
