"""Atomic writes: build under a temporary name, then make it visible in one step.

A file is replaced by one ``os.replace``. A folder cannot be renamed over a non-empty
one, so a folder that is replaced is written as a new version and a symlink to it is
switched with one ``os.replace`` (:func:`atomic_folder`): readers see the old or the new
version, never a mix, and never nothing. A crash or a validation error never leaves a
half-written file or folder in sight; temporary names carry the writer's pid, and the
next writer of the same place removes those whose process is gone
(:func:`remove_leftovers`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

TMP_MARK = ".tmp-"
"""Temporary names are ``.<name>.tmp-<pid>-<random>`` (older code: ``.<name>.tmp-<random>``)."""


def _tmp_name(name: str) -> str:
    return f".{name}{TMP_MARK}{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _tmp_sibling(target: Path) -> Path:
    return target.with_name(_tmp_name(target.name))


def pid_alive(pid: int) -> bool:
    """Does a process with this pid exist on this host? (Conservative: True when unsure.)"""
    if pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _writer_gone(name: str) -> bool:
    """Has the process that made the temporary entry ``name`` ended? Names written by
    older code carry no pid: they are leftovers of a killed run."""
    pid, sep, _ = name.rsplit(TMP_MARK, 1)[1].partition("-")
    if not sep or not pid.isdigit():
        return True
    return not pid_alive(int(pid))


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def remove_leftovers(folder: Path | str, name: str | None = None) -> list[str]:
    """Remove temporary entries (``.<name>.tmp-*``; any name when None) in ``folder`` whose
    writer is gone, e.g. left by a run killed mid-way. Returns the names removed."""
    folder = Path(folder)
    prefix = "." if name is None else f".{name}{TMP_MARK}"
    removed = []
    with contextlib.suppress(FileNotFoundError):
        for entry in folder.iterdir():
            name_ok = entry.name.startswith(prefix) and TMP_MARK in entry.name
            if name_ok and _writer_gone(entry.name):
                _remove(entry)
                removed.append(entry.name)
    return removed


def retire(path: Path) -> None:
    """Remove a file or folder: first renamed to a temporary name (one step, so it is
    gone from sight at once), then deleted; a kill in between leaves a leftover that
    :func:`remove_leftovers` takes away."""
    hidden = _tmp_sibling(path)
    os.rename(path, hidden)
    _remove(hidden)


@contextlib.contextmanager
def atomic_path(target: Path | str) -> Iterator[Path]:
    """Yield a temporary path; on success it becomes ``target`` (file or folder) in one step.

    A file, or a folder where nothing was, is renamed into place. A folder that replaces
    an existing one goes through :func:`switch_folder` (``target`` becomes a symlink to
    the new version in ``.<name>.versions/``, the previous version kept until the next
    replace, so that a reader part-way through it can finish). On error the temporary path
    is removed and ``target`` is left as it was.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(target.parent, target.name)
    tmp = _tmp_sibling(target)
    try:
        yield tmp
        if tmp.is_dir() and (target.exists() or target.is_symlink()):
            switch_folder(tmp, target, target.with_name(f".{target.name}.versions"), keep=2)
        else:
            os.replace(tmp, target)
    finally:
        if tmp.exists() or tmp.is_symlink():
            _remove(tmp)


@contextlib.contextmanager
def atomic_folder(link: Path | str, versions: Path | str, keep: int = 1) -> Iterator[Path]:
    """Yield a new empty folder; on success it becomes ``versions/<time>`` and the symlink
    ``link`` is switched to it in one ``os.replace`` (:func:`switch_folder`).

    On error the new folder is removed and ``link`` still shows the previous version.
    """
    link, versions = Path(link), Path(versions)
    versions.mkdir(parents=True, exist_ok=True)
    remove_leftovers(versions)
    remove_leftovers(link.parent, link.name)
    tmp = versions / _tmp_name("new")
    tmp.mkdir()
    try:
        yield tmp
        switch_folder(tmp, link, versions, keep)
    finally:
        if tmp.exists():
            _remove(tmp)


def switch_folder(folder: Path, link: Path, versions: Path, keep: int = 1) -> Path:
    """Make the complete ``folder`` the version ``link`` shows; returns its final path.

    ``folder`` is renamed to ``versions/<UTC time>`` (a new name: nothing in sight
    changes), a relative symlink to it is made under a temporary name and renamed over
    ``link``: that one rename is the switch. Then the versions beyond the newest ``keep``
    are removed, except any that a symlink beside ``link`` still shows. A ``link`` that
    is a real folder (written by older code) is first moved into ``versions`` as the
    previous version.
    """
    versions.mkdir(parents=True, exist_ok=True)
    final = versions / _stamp()
    os.rename(folder, final)
    pointer = _tmp_sibling(link)
    os.symlink(os.path.relpath(final, link.parent), pointer)
    try:
        if link.is_dir() and not link.is_symlink():
            mtime = dt.datetime.fromtimestamp(link.stat().st_mtime, dt.UTC)
            os.rename(link, versions / f"{_stamp(mtime)}-older")
        os.replace(pointer, link)
    finally:
        pointer.unlink(missing_ok=True)
    prune_versions(link, versions, keep)
    return final


def prune_versions(link: Path, versions: Path, keep: int) -> list[str]:
    """Remove all but the newest ``keep`` versions in ``versions``; never one that a symlink
    in ``link``'s folder shows. Returns the names removed."""
    shown = {p.resolve() for p in link.parent.iterdir() if p.is_symlink()}
    names = sorted(p.name for p in versions.iterdir() if p.is_dir() and not p.name.startswith("."))
    removed = []
    for name in names[: max(len(names) - max(keep, 1), 0)]:
        if (versions / name).resolve() not in shown:
            retire(versions / name)
            removed.append(name)
    return removed


def _stamp(when: dt.datetime | None = None) -> str:
    """A sortable UTC time for a version's name, e.g. ``20260101T120000123456``."""
    return (when or dt.datetime.now(dt.UTC)).strftime("%Y%m%dT%H%M%S%f")


def write_parquet_atomic(df, target: Path | str, **kwargs) -> Path:
    """Write a pandas frame or arrow table to Parquet atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = df if isinstance(df, pa.Table) else pa.Table.from_pandas(df, preserve_index=False)
    target = Path(target)
    with atomic_path(target) as tmp:
        pq.write_table(table, tmp, **kwargs)
    return target


def fsync_path(path: Path) -> None:
    """Make a file's contents, or a folder's entries (a file created, renamed or removed
    in it), durable: what a rename or a removal needs to survive a crash."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
