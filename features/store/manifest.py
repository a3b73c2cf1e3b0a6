"""The store's manifest: the one file that says which files make up the events store.

A write puts every new file under a new unique name, then switches ``manifest.json``
with one ``os.replace``; readers read only the files the manifest lists. A write killed
at any moment therefore leaves the old store or the new one, never a mix, and the files
a killed or superseded write left behind are removed by the next write.

A store written before manifests existed (``events/month=*/part-*.parquet`` and
``customers.parquet`` ...) is read as it lies and converted by its next write.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from features.atomic import fsync_path

MANIFEST = "manifest.json"
FORMAT = "omni-personalize events store"
VERSION = 1
EVENTS_DIR = "events"
PART_PREFIX = "ev-"  # parts of manifest stores; older stores named theirs part-*
LOCK = ".write.lock"


class StoreMissingError(FileNotFoundError):
    """The events store has not been written yet."""


class StoreBusyError(RuntimeError):
    """Another process is writing the store."""


@dataclass(frozen=True)
class StoreFile:
    """One file of the store: its path relative to the store folder, and its rows."""

    path: str
    rows: int | None = None


@dataclass(frozen=True)
class Manifest:
    """The live files of a store. ``legacy``: read from a store without a manifest."""

    parts: tuple[StoreFile, ...] = ()
    tables: dict[str, StoreFile] = field(default_factory=dict)
    identity: StoreFile | None = None
    legacy: bool = False

    @property
    def files(self) -> set[str]:
        listed = {p.path for p in self.parts} | {t.path for t in self.tables.values()}
        return listed | ({self.identity.path} if self.identity else set())

    def to_json(self) -> str:
        body = {
            "format": FORMAT,
            "version": VERSION,
            "events": [{"path": p.path, "rows": p.rows} for p in self.parts],
            "tables": {n: {"path": t.path, "rows": t.rows} for n, t in self.tables.items()},
            "identity": (
                {"path": self.identity.path, "rows": self.identity.rows} if self.identity else None
            ),
        }
        return json.dumps(body, indent=1) + "\n"


def new_write_id() -> str:
    """A unique stem for the files of one write."""
    return uuid.uuid4().hex[:16]


def read_manifest(store_dir: Path) -> Manifest | None:
    """The store's manifest; a legacy store's files as one; None when there is no store."""
    path = store_dir / MANIFEST
    try:
        body = json.loads(path.read_text())
    except FileNotFoundError:
        return _legacy_manifest(store_dir)
    except (OSError, ValueError) as exc:
        raise ValueError(f"the events store's manifest {path} is unreadable: {exc}") from exc
    if body.get("format") != FORMAT or not isinstance(body.get("version"), int):
        raise ValueError(f"{path} is not an events store manifest")
    if body["version"] > VERSION:
        raise ValueError(
            f"the events store {store_dir} was written by a newer version of omni-personalize "
            f"(manifest version {body['version']}, this one reads up to {VERSION})"
        )
    identity = body.get("identity")
    return Manifest(
        parts=tuple(StoreFile(p["path"], p.get("rows")) for p in body["events"]),
        tables={n: StoreFile(t["path"], t.get("rows")) for n, t in body["tables"].items()},
        identity=StoreFile(identity["path"], identity.get("rows")) if identity else None,
    )


def _legacy_manifest(store_dir: Path) -> Manifest | None:
    """Files of a store written before manifests, as that code's readers saw them.

    Parts named like a manifest store's are left out: they come from a write that was
    killed before it switched its manifest, and are not part of the store.
    """
    events = store_dir / EVENTS_DIR
    parts = sorted(
        p
        for p in events.rglob("*.parquet")
        if not p.name.startswith((PART_PREFIX, ".", "_"))
        and not any(q.startswith((".", "_")) for q in p.relative_to(events).parts[:-1])
    )
    if not parts:
        return None
    tables = {
        p.stem: StoreFile(p.name)
        for p in sorted(store_dir.glob("*.parquet"))
        if p.stem in ("customers", "products", "stores")
    }
    listed = tuple(StoreFile(p.relative_to(store_dir).as_posix()) for p in parts)
    return Manifest(parts=listed, tables=tables, legacy=True)


def sync_files(store_dir: Path, paths: list[str]) -> None:
    """Flush new files, and the folders that got them (or a new month folder), to disk
    before a manifest lists them."""
    folders: set[Path] = set()
    for rel in paths:
        fsync_path(store_dir / rel)
        folders.update(p for p in (store_dir / rel).parents if store_dir in p.parents)
    for folder in sorted(folders, reverse=True):
        fsync_path(folder)


def switch_manifest(store_dir: Path, manifest: Manifest, write_id: str) -> None:
    """Make ``manifest`` the store's: written beside, flushed, then one ``os.replace``."""
    tmp = store_dir / f".{MANIFEST}.{write_id}"
    with open(tmp, "w") as fh:
        fh.write(manifest.to_json())
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, store_dir / MANIFEST)
    fsync_path(store_dir)


def remove_unlisted(store_dir: Path, manifest: Manifest) -> int:
    """Delete what no live manifest lists: files of killed or superseded writes, older
    code's ``.append-*`` staging folders and its ``.store.tmp-*`` swap folders.

    Returns how many files were removed. Call only while holding the write lock.
    """
    keep = manifest.files | {MANIFEST, LOCK}
    removed = 0
    for path in sorted(store_dir.rglob("*"), reverse=True):  # files before their folders
        rel = path.relative_to(store_dir).as_posix()
        if path.is_dir() and not path.is_symlink():
            with contextlib.suppress(OSError):
                path.rmdir()  # only empty folders
        elif rel not in keep:
            path.unlink(missing_ok=True)
            removed += 1
    for old in store_dir.parent.glob(f".{store_dir.name}.tmp-*"):
        removed += sum(1 for p in old.rglob("*") if p.is_file())
        shutil.rmtree(old, ignore_errors=True)
    return removed


@contextlib.contextmanager
def write_lock(store_dir: Path) -> Iterator[None]:
    """Hold the store's write lock (released by the OS if the process dies)."""
    store_dir.mkdir(parents=True, exist_ok=True)
    with open(store_dir / LOCK, "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StoreBusyError(
                f"another process is writing the events store {store_dir}: "
                "run this again when it has finished"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
