"""One settings object for paths, URIs and seeds. Environment variables override defaults.

Nothing is read or created at import time: call :func:`get_settings` when a command runs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

ENV_PREFIX = "OMNI_"


@dataclass(frozen=True)
class Settings:
    """Where data lives, where MLflow tracks, and the default seed.

    ``home`` holds the raw sources, the events store, feature tables and the
    default MLflow SQLite file. Override with ``OMNI_HOME``; MLflow with
    ``MLFLOW_TRACKING_URI``; seed with ``OMNI_SEED``; the Spark master for
    ``--engine spark`` with ``OMNI_SPARK_MASTER`` (None: local mode, or spark-submit's).
    ``api_token`` (``OMNI_API_TOKEN``): when set, the service's scoring endpoints require
    ``Authorization: Bearer <token>``. ``max_body_bytes`` (``OMNI_MAX_BODY_BYTES``): larger
    request bodies get 413 from the service, before they are read.
    """

    home: Path
    tracking_uri: str
    seed: int = 42
    max_identity_component: int = 25
    spark_master: str | None = None
    api_token: str | None = field(default=None, repr=False)  # never printed
    max_body_bytes: int = 1_048_576

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
    """Build settings from defaults overridden by environment variables."""
    env = os.environ if env is None else env
    home = Path(env.get(f"{ENV_PREFIX}HOME", "omni_home")).expanduser().resolve()
    tracking_uri = env.get("MLFLOW_TRACKING_URI") or _sqlite_uri(home)
    try:
        seed = int(env.get(f"{ENV_PREFIX}SEED", "42"))
        max_comp = int(env.get(f"{ENV_PREFIX}MAX_IDENTITY_COMPONENT", "25"))
        max_body = int(env.get(f"{ENV_PREFIX}MAX_BODY_BYTES", "1048576"))
    except ValueError as exc:
        raise ValueError(
            f"OMNI_SEED / OMNI_MAX_IDENTITY_COMPONENT / OMNI_MAX_BODY_BYTES must be integers: {exc}"
        ) from exc
    if max_body < 1:
        raise ValueError(f"OMNI_MAX_BODY_BYTES must be at least 1, got {max_body}")
    return Settings(
        home=home,
        tracking_uri=tracking_uri,
        seed=seed,
        max_identity_component=max_comp,
        spark_master=env.get(f"{ENV_PREFIX}SPARK_MASTER") or None,
        api_token=env.get(f"{ENV_PREFIX}API_TOKEN") or None,
        max_body_bytes=max_body,
    )
