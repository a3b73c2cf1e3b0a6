"""The online snapshot: everything the service and batch scoring read, built in one step.

:func:`build_snapshot` loads the ``@champion`` of each model from MLflow, builds the
customer feature table as of the cutoff with the training feature code, moves the
recommender to the same cutoff (ALS factors, popularity and histories rebuilt; the
ranker is the trained one) and writes ``<home>/online/<stamp>/``:

- ``features.parquet``: customer features as of the cutoff (the cutoff in its metadata);
- ``models.pkl``: the three fitted models, exactly as MLflow returned them;
- ``serving/``: what real-time requests read, precomputed (personal candidates, ranked
  lists per channel), one ``<name>.npy`` per array, memory-mapped read-only when loaded
  (snapshots built before stop 39 hold them in one ``serving.npz``, read whole);
- ``manifest.json``: cutoff, model versions and run ids, counts, and the SHA-256 of every
  other file (``files``), checked by :func:`load_snapshot` before anything is unpickled.

The folder is written under a temporary name and renamed whole, then
``<home>/online/LATEST`` (one file, replaced in one rename) names it. After a build the
newest ``OMNI_KEEP_SNAPSHOTS`` snapshots are kept, plus any that a running process marked
as in use (``online/.in-use/<host>.<pid>``, :func:`mark_in_use`). Loading a snapshot needs
no MLflow, so a built bento (which packages one) runs without a tracking server.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import hashlib
import json
import os
import pickle
import re
import socket
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from features.atomic import atomic_path, pid_alive, remove_leftovers, retire
from features.cutoffs import to_utc
from features.settings import Settings

MODEL_NAMES: dict[str, str] = {
    "churn": "churn",
    "next_best_channel": "next_best_channel",
    "recommender": "recommender",
}
"""Snapshot key -> registered model name."""
FORMAT = 1
LATEST = "LATEST"
LIST_DEPTH = 50
"""How deep each customer's precomputed ranked lists go (see serving.ranked_lists)."""
STAMP = re.compile(r"\d{8}T\d{12}")
"""A snapshot folder's name: the UTC time it was built, e.g. 20260101T120000123456."""
SERVING_DIR = "serving"
"""The snapshot's folder of precomputed serving arrays, one ``<name>.npy`` each."""
LEGACY_ARRAYS = "serving.npz"
"""Where snapshots built before stop 39 hold the same arrays (read into memory)."""
_ARRAY_NAME = re.compile(r"[A-Za-z0-9_]+")
IN_USE = ".in-use"
"""Folder of the markers ``<host>.<pid>`` (text: the snapshot's name) of running users."""


class SnapshotError(RuntimeError):
    """No usable snapshot (or no champion to build one from); the message says what to do."""


@dataclass
class OnlineSnapshot:
    """A loaded snapshot: feature rows, fitted models and where they came from."""

    path: Path
    as_of: pd.Timestamp
    features: pd.DataFrame  # index customer_id, registry columns
    models: dict[str, Any]  # "churn" / "next_best_channel" / "recommender" -> fitted model
    manifest: dict[str, Any]
    arrays: dict[str, Any] | None = None  # precomputed serving arrays (serving/)

    @property
    def versions(self) -> dict[str, str]:
        """Model name -> registered version, e.g. {"churn": "3", ...}."""
        return {k: str(v["version"]) for k, v in self.manifest["models"].items()}


def online_dir(settings: Settings) -> Path:
    """Where snapshots live: ``<home>/online``."""
    return settings.home / "online"


def latest_snapshot(settings: Settings) -> Path:
    """The newest snapshot's folder, or a :class:`SnapshotError` saying how to make one."""
    pointer = online_dir(settings) / LATEST
    if not pointer.exists():
        raise SnapshotError(
            f"no online snapshot in {online_dir(settings)}: build one with "
            "`omni snapshot build` (needs trained models: `omni train all` or `omni run`)"
        )
    path = online_dir(settings) / pointer.read_text().strip()
    if not (path / "manifest.json").exists():
        raise SnapshotError(f"{pointer} names {path}, which is not a complete snapshot")
    return path


def snapshot_folders(settings: Settings) -> list[Path]:
    """Every snapshot folder in the home, the one ``LATEST`` names first, then newest first."""
    folder = online_dir(settings)
    if not folder.is_dir():
        return []
    found = sorted(
        (p for p in folder.iterdir() if STAMP.fullmatch(p.name) and p.is_dir()), reverse=True
    )
    pointer = folder / LATEST
    named = pointer.read_text().strip() if pointer.is_file() else ""
    return sorted(found, key=lambda p: p.name != named)  # stable: the rest stay newest first


def newest_valid_snapshot(
    settings: Settings, note: Callable[[str], None] = lambda _m: None
) -> Path | None:
    """The first of :func:`snapshot_folders` whose files match its manifest; each damaged
    one passed over is reported through ``note``. None: no valid snapshot at all."""
    for path in snapshot_folders(settings):
        try:
            verify_snapshot(path)
            return path
        except SnapshotError as exc:
            note(f"{exc}; trying the snapshot before it")
    return None


def file_hashes(folder: Path) -> dict[str, str]:
    """SHA-256 of every file under ``folder`` but the manifest (relative POSIX path -> hex)."""
    hashes = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        name = path.relative_to(folder).as_posix()
        if name != "manifest.json":
            with open(path, "rb") as f:
                hashes[name] = hashlib.file_digest(f, "sha256").hexdigest()
    return hashes


def read_manifest(path: Path) -> dict[str, Any]:
    """A snapshot's manifest, or a :class:`SnapshotError` naming what is wrong with it."""
    try:
        manifest = json.loads((path / "manifest.json").read_text())
    except FileNotFoundError:
        raise SnapshotError(
            f"snapshot {path} lacks manifest.json: rebuild it (`omni snapshot build`)"
        ) from None
    except (OSError, ValueError) as exc:
        raise SnapshotError(f"snapshot {path}: manifest.json is damaged ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        raise SnapshotError(f"snapshot {path} has format {found}, need {FORMAT}")
    return manifest


def verify_snapshot(path: Path | str) -> dict[str, Any]:
    """Check every file the manifest lists against its SHA-256; return the manifest.

    A damaged or missing file is a :class:`SnapshotError` naming it. Snapshots built
    before the manifest listed hashes (no ``files``) are accepted as they are, with a
    note; reading them still fails cleanly, naming the file, if one is damaged."""
    path = Path(path)
    manifest = read_manifest(path)
    expected = manifest.get("files")
    if expected is None:
        _note_unverified(path)
        return manifest
    for name, digest in expected.items():
        file = path / name
        try:
            with open(file, "rb") as f:
                found = hashlib.file_digest(f, "sha256").hexdigest()
        except OSError as exc:
            raise SnapshotError(
                f"snapshot {path.name} is damaged: cannot read {name} ({exc.strerror})"
            ) from None
        if found != digest:
            raise SnapshotError(
                f"snapshot {path.name} is damaged: {name} does not match its SHA-256 "
                "in manifest.json"
            )
    return manifest


@functools.cache
def _note_unverified(path: Path) -> None:
    """Say once per process that a snapshot has no checksums to verify."""
    print(
        f"note: snapshot {path.name} predates file checksums and is not verified; "
        "`omni snapshot build` makes one that is",
        file=sys.stderr,
    )


def load_snapshot(path: Path | str) -> OnlineSnapshot:
    """Read a snapshot folder after checking its files (:func:`verify_snapshot`); any
    problem is a one-line :class:`SnapshotError` naming the file."""
    path = Path(path)
    for part in ("manifest.json", "features.parquet", "models.pkl"):
        if not (path / part).exists():
            raise SnapshotError(f"snapshot {path} lacks {part}: rebuild it (`omni snapshot build`)")
    manifest = verify_snapshot(path)
    arrays = _serving_arrays(path)
    with _reading(path, "features.parquet"):
        features = _feature_table(path / "features.parquet", arrays)
    with _reading(path, "models.pkl"), open(path / "models.pkl", "rb") as f:
        models = pickle.load(f)
    wanted = set(manifest["models"])
    if not wanted or set(models) != wanted or not wanted <= set(MODEL_NAMES):
        raise SnapshotError(
            f"snapshot {path} holds models {sorted(models)}, its manifest lists "
            f"{sorted(wanted)}: rebuild it (`omni snapshot build`)"
        )
    as_of = pd.Timestamp(manifest["as_of"])
    return OnlineSnapshot(path, as_of, features, models, manifest, arrays or None)


def _feature_table(file: Path, arrays: dict[str, Any] | None) -> pd.DataFrame:
    """The snapshot's feature table: on its mapped columns when ``serving/`` holds them
    (:mod:`serving.mapped_features`; they leave ``arrays``), else read from ``file``."""
    from serving.mapped_features import mapped_table, take_blocks

    blocks = take_blocks(arrays) if arrays else {}
    if blocks:
        index = pd.read_parquet(file, columns=[]).index
        table = mapped_table(blocks, index, lambda names: pd.read_parquet(file, columns=names))
        if table is not None:
            return table
    return pd.read_parquet(file)


def _serving_arrays(path: Path) -> dict[str, Any] | None:
    """The snapshot's precomputed serving arrays (None: it has none). Memory-mapped
    read-only from ``serving/``: the lists and candidates are most of a worker's memory
    a customer (3.8 KB of ~9 in stop 37), and mapped, they are pages of a file that the
    workers share and the system pages in as requests read them and can take back,
    instead of a private copy in every worker. Plain arrays, not ``np.memmap``: their
    slices on the request path then carry no subclass."""
    import numpy as np

    folder = path / SERVING_DIR
    if folder.is_dir():
        arrays = {}
        for file in sorted(folder.glob("*.npy")):
            name = f"{SERVING_DIR}/{file.name}"
            with _reading(path, name):
                arrays[file.stem] = np.asarray(np.load(file, mmap_mode="r", allow_pickle=False))
        return arrays
    if (path / LEGACY_ARRAYS).exists():
        with _reading(path, LEGACY_ARRAYS), np.load(path / LEGACY_ARRAYS) as stored:
            return {name: stored[name] for name in stored.files}
    return None


def _write_serving_arrays(folder: Path, arrays: dict[str, Any]) -> None:
    """``arrays`` as ``folder/serving/<name>.npy`` (what :func:`_serving_arrays` maps)."""
    import numpy as np

    (folder / SERVING_DIR).mkdir()
    for name, value in arrays.items():
        if not _ARRAY_NAME.fullmatch(name):
            raise ValueError(f"serving array name {name!r} is not a plain file name")
        np.save(folder / SERVING_DIR / f"{name}.npy", np.asarray(value), allow_pickle=False)


@contextlib.contextmanager
def _reading(path: Path, name: str) -> Iterator[None]:
    """Any failure while reading one file of a snapshot becomes a SnapshotError naming it
    (a snapshot that predates checksums may be truncated)."""
    try:
        yield
    except Exception as exc:
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise SnapshotError(
            f"snapshot {path.name} is damaged: cannot read {name} ({reason})"
        ) from None


def champion_versions(settings: Settings) -> dict[str, int | None]:
    """The version behind each model's ``@champion`` (None: no champion yet)."""
    from training.model_registry import champion_version

    return {key: champion_version(settings, name) for key, name in MODEL_NAMES.items()}


def check_model_keys(models: Sequence[str] | None) -> tuple[str, ...] | None:
    """The snapshot keys a user asked for (``--models churn,recommender``), checked;
    None (every model that has a champion) stays None."""
    if models is None:
        return None
    keys = tuple(dict.fromkeys(m.strip() for m in models if m.strip()))
    unknown = [k for k in keys if k not in MODEL_NAMES]
    if unknown or not keys:
        raise ValueError(
            f"--models {','.join(models)}: choose among {', '.join(MODEL_NAMES)} "
            f"(unknown: {', '.join(unknown) or 'none given'})"
        )
    return keys


def wanted_champions(settings: Settings, models: Sequence[str] | None = None) -> dict[str, int]:
    """Snapshot key -> champion version of the models to serve: ``models`` (each must have
    a champion), or by default every model that has one (at least one must)."""
    versions = champion_versions(settings)
    keys = tuple(MODEL_NAMES) if models is None else tuple(models)
    missing = [k for k in keys if versions[k] is None]
    if missing and (models is not None or len(missing) == len(keys)):
        raise SnapshotError(
            f"no @champion for {', '.join(missing)} in {settings.tracking_uri}: train first "
            "(`omni train all`, or `omni run` for everything on synthetic data)"
            + ("" if models is None else ", or leave it out of --models")
        )
    return {k: versions[k] for k in keys if versions[k] is not None}


def is_current(settings: Settings, path: Path, models: Sequence[str] | None = None) -> bool:
    """Was the snapshot built from today's champions (of ``models``, default: every model
    that has one)? (``RegistryUnreachable`` when the registry does not answer.)"""
    manifest = read_manifest(path)
    built = {k: int(v["version"]) for k, v in manifest["models"].items()}
    try:
        return built == wanted_champions(settings, models)
    except SnapshotError:
        return False


def build_snapshot(
    settings: Settings,
    as_of: pd.Timestamp | str | None = None,
    refresh_recommender: bool = True,
    progress: Callable[[str], None] | None = None,
    serving: bool = True,
    models: Sequence[str] | None = None,
) -> Path:
    """Build a snapshot as of ``as_of`` (default: the first midnight after the last
    event) from the champions of ``models`` (default: every model that has one) and the
    events store; returns its folder. ``serving``: also precompute what real-time
    requests read (batch scoring does not need it; a service given a snapshot without it
    computes it at start-up)."""
    from features.customer_features import build_customer_features
    from features.cutoffs import parse_cutoff
    from features.registry import DEFAULT_WINDOWS
    from features.store.events import event_part_paths, read_events, read_table
    from serving.ranked_lists import serving_arrays

    tell = progress or (lambda _m: None)
    for name in remove_leftovers(online_dir(settings)):
        tell(f"removed {name}, left by an earlier build that did not finish")
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    models, sources = _load_champions(settings, models)
    seconds["load_models"] = time.perf_counter() - t0
    tell("loaded the champions: " + ", ".join(f"{k} v{v['version']}" for k, v in sources.items()))
    t = parse_cutoff(as_of, "--as-of") if as_of is not None else after_last_event(settings)
    rec = models.get("recommender")
    lookback = max(max(DEFAULT_WINDOWS), rec.lookback_days if rec is not None else 0)
    t0 = time.perf_counter()
    parts = event_part_paths(settings.store_dir)  # before the read: a later write only adds
    events = read_events(settings.store_dir, start=t - pd.Timedelta(days=lookback), end=t)
    tables = {n: read_table(settings.store_dir, n) for n in ("customers", "products", "stores")}
    seconds["read"] = time.perf_counter() - t0
    tell(f"read {len(events):,} events before {t:%Y-%m-%d %H:%M}")
    t0 = time.perf_counter()
    features = build_customer_features(events, tables["customers"], t)
    seconds["features"] = time.perf_counter() - t0
    tell(f"built features of {len(features):,} customers ({seconds['features']:.1f} s)")
    if rec is not None and refresh_recommender and t != rec.as_of_:
        t0 = time.perf_counter()
        rec.refresh(events, tables["customers"], tables["products"], tables["stores"], as_of=t)
        seconds["recommender"] = time.perf_counter() - t0
        tell(f"moved the recommender to {t:%Y-%m-%d} ({seconds['recommender']:.1f} s)")
    arrays = {}
    if serving and rec is not None:
        t0 = time.perf_counter()
        arrays = serving_arrays(rec, LIST_DEPTH)
        seconds["serving_arrays"] = time.perf_counter() - t0
        tell(f"precomputed candidates and ranked lists ({seconds['serving_arrays']:.1f} s)")
    return write_snapshot(
        settings, t, features, models, sources, arrays, len(events), seconds, tell, parts
    )


def write_snapshot(
    settings: Settings,
    as_of: pd.Timestamp,
    features: pd.DataFrame,
    models: dict[str, Any],
    sources: dict[str, dict[str, Any]],
    arrays: dict[str, Any] | None = None,
    events: int | None = None,
    seconds: dict[str, float] | None = None,
    tell: Callable[[str], None] | None = None,
    store_parts: list[str] | None = None,
) -> Path:
    """Write a snapshot of fitted ``models`` (keys of :data:`MODEL_NAMES`; ``sources``: the
    registered version each came from) and the ``features`` as of ``as_of`` into a new
    folder under the home, switch ``LATEST`` to it and prune old ones; returns the folder.
    ``store_parts``: the events store's parts the features were built from (the live loop
    refreshes the customers of parts added later).
    :func:`build_snapshot` writes the champions this way; a test can write models it just
    fitted, without a registry."""
    from features.build import write_features
    from features.registry import DEFAULT_WINDOWS
    from serving.mapped_features import feature_blocks

    tell = tell or (lambda _m: None)
    rec = models.get("recommender")
    manifest = {
        "format": FORMAT,
        "as_of": as_of.isoformat(),
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "models": sources,
        "recommender_as_of": rec.as_of_.isoformat() if rec is not None else None,
        "customers": len(features),
        "products": int(rec.catalogue_.n_items) if rec is not None else None,
        "events": events,
        "seconds": seconds or {},
        "store_parts": store_parts,
    }
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%f")
    target = online_dir(settings) / stamp
    with atomic_path(target) as tmp:
        tmp.mkdir(parents=True)
        write_features(features, tmp / "features.parquet", as_of, DEFAULT_WINDOWS)
        with open(tmp / "models.pkl", "wb") as f:
            pickle.dump(models, f, protocol=pickle.HIGHEST_PROTOCOL)
        # the table as read back, so that its mapped columns are what a reader of the file gets
        blocks = feature_blocks(pd.read_parquet(tmp / "features.parquet"))
        _write_serving_arrays(tmp, (arrays or {}) | blocks)
        manifest["files"] = file_hashes(tmp)
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
    with atomic_path(online_dir(settings) / LATEST) as tmp:
        tmp.write_text(stamp + "\n")
    for name in prune_snapshots(settings):
        tell(f"removed snapshot {name} (keeping the newest {settings.keep_snapshots})")
    return target


def mark_in_use(settings: Settings, path: Path) -> Path | None:
    """Record that this process uses the snapshot ``path`` (one marker per process,
    ``online/.in-use/<host>.<pid>``), so that :func:`prune_snapshots` keeps it while the
    process lives. ``omni serve`` marks the snapshot it serves (the BentoML server keeps
    its pid); batch scoring the one it scores with. None for a snapshot outside the home."""
    path = Path(path).resolve()
    folder = online_dir(settings)
    if path.parent != folder.resolve():
        return None
    marker = folder / IN_USE / f"{socket.gethostname()}.{os.getpid()}"
    marker.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(marker) as tmp:
        tmp.write_text(path.name + "\n")
    return marker


def snapshots_in_use(settings: Settings) -> set[str]:
    """Names of the snapshots that live processes marked; markers of this host's ended
    processes are removed (another host's cannot be checked and count as live)."""
    folder = online_dir(settings) / IN_USE
    used: set[str] = set()
    if not folder.is_dir():
        return used
    host = socket.gethostname()
    for marker in folder.iterdir():
        name, dot, pid = marker.name.rpartition(".")
        if marker.name.startswith(".") or not dot or not pid.isdigit():
            continue
        if name == host and not pid_alive(int(pid)):
            marker.unlink(missing_ok=True)
            continue
        with contextlib.suppress(OSError):
            used.add(marker.read_text().strip())
    return used


def prune_snapshots(settings: Settings) -> list[str]:
    """Remove all but the newest ``settings.keep_snapshots`` snapshots, never the one
    ``LATEST`` names nor one in use (:func:`mark_in_use`). Returns the names removed."""
    folders = sorted((p.name for p in snapshot_folders(settings)), reverse=True)
    pointer = online_dir(settings) / LATEST
    keep = set(folders[: settings.keep_snapshots]) | snapshots_in_use(settings)
    if pointer.is_file():
        keep.add(pointer.read_text().strip())
    removed = []
    for name in folders:
        if name not in keep:
            retire(online_dir(settings) / name)
            removed.append(name)
    return removed


def after_last_event(settings: Settings) -> pd.Timestamp:
    """The first midnight after the newest event in the store."""
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    from features.store.events import events_dataset

    dataset = events_dataset(settings.store_dir)
    months = pc.max(dataset.to_table(columns=["month"])["month"]).as_py()
    if months is None:
        raise SnapshotError(f"the events store {settings.store_dir} is empty")
    ts = dataset.to_table(columns=["ts"], filter=ds.field("month") == months)["ts"]
    last = to_utc(pc.max(ts).as_py())
    return last.floor("D") + pd.Timedelta(days=1)


def _load_champions(
    settings: Settings, models: Sequence[str] | None = None
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The fitted model inside the ``@champion`` MLflow model of each of ``models``
    (default: every model that has one), and where it came from.

    Only the ``MLmodel`` file and the pickle are downloaded, and the pickle is read with
    the installed packages (``mlflow.pyfunc.load_model`` would import the code bundled
    with the model over the running one)."""
    import tempfile

    import yaml
    from mlflow import MlflowClient
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    from training.tracking import use_tracking

    keys = wanted_champions(settings, models)  # first: a client would create an empty store
    client = MlflowClient(use_tracking(settings))
    models, sources = {}, {}
    quiet = {"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}  # two small files per model
    with tempfile.TemporaryDirectory() as tmp, _environ(quiet):
        for key in keys:
            name = MODEL_NAMES[key]
            version = client.get_model_version_by_alias(name, "champion")
            repo = get_artifact_repository(f"models:/{name}/{version.version}")
            folder = Path(tmp) / key
            folder.mkdir()
            conf = yaml.safe_load(Path(repo.download_artifacts("MLmodel", str(folder))).read_text())
            pickled = conf["flavors"]["python_function"]["python_model"]
            with open(repo.download_artifacts(pickled, str(folder)), "rb") as f:
                models[key] = pickle.load(f).model
            sources[key] = {
                "name": name,
                "version": int(version.version),
                "run_id": version.run_id,
                "source": version.source,
            }
    return models, sources


@contextlib.contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the duration of a block."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
