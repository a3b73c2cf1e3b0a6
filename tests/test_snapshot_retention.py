"""Snapshot retention (serving/online.py): the newest N snapshots stay, plus the one LATEST
names and any a live process marked as in use; nothing else piles up (issue 14)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
from killing import ended_pid

from features.settings import get_settings
from serving.online import (
    IN_USE,
    LATEST,
    mark_in_use,
    newest_valid_snapshot,
    prune_snapshots,
    snapshot_folders,
    snapshots_in_use,
)

STAMPS = [f"2026010{d}T000000000000" for d in range(1, 7)]  # six builds, oldest first


def _home(tmp_path, latest: str = STAMPS[-1], **env: str):
    settings = get_settings({"OMNI_HOME": str(tmp_path / "home"), **env})
    online = settings.home / "online"
    for stamp in STAMPS:
        (online / stamp).mkdir(parents=True)
        (online / stamp / "manifest.json").write_text(json.dumps({"format": 1}))
    (online / LATEST).write_text(latest + "\n")
    return settings


def test_keeps_the_newest_n_and_the_one_latest_names(tmp_path):
    # issue 14: old snapshots (~32 MB each) were never removed
    settings = _home(tmp_path, latest=STAMPS[1], OMNI_KEEP_SNAPSHOTS="2")
    removed = prune_snapshots(settings)
    left = sorted(p.name for p in snapshot_folders(settings))
    assert left == [STAMPS[1], STAMPS[4], STAMPS[5]]
    assert sorted(removed) == [STAMPS[0], STAMPS[2], STAMPS[3]]
    assert not [p for p in (settings.home / "online").iterdir() if ".tmp-" in p.name]


def test_a_snapshot_in_use_by_a_live_process_is_kept(tmp_path):
    # issue 14: a removed snapshot must never be one a running service reads
    settings = _home(tmp_path, OMNI_KEEP_SNAPSHOTS="1")
    online = settings.home / "online"
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        markers = online / IN_USE
        markers.mkdir()
        host = socket.gethostname()
        (markers / f"{host}.{live.pid}").write_text(STAMPS[0] + "\n")  # a running service
        (markers / f"{host}.{ended_pid()}").write_text(STAMPS[1] + "\n")  # one that ended
        (markers / f"other-host.{os.getpid()}").write_text(STAMPS[2] + "\n")  # cannot check
        assert mark_in_use(settings, online / STAMPS[3]) is not None  # this process
        assert snapshots_in_use(settings) == {STAMPS[0], STAMPS[2], STAMPS[3]}
        prune_snapshots(settings)
        left = sorted(p.name for p in snapshot_folders(settings))
        assert left == [STAMPS[0], STAMPS[2], STAMPS[3], STAMPS[5]]
        assert len(list(markers.iterdir())) == 3  # the ended process's marker went too
    finally:
        live.kill()
        live.wait()


def test_keep_setting_is_checked(tmp_path):
    with pytest.raises(ValueError, match="OMNI_KEEP_SNAPSHOTS"):
        get_settings({"OMNI_HOME": str(tmp_path), "OMNI_KEEP_SNAPSHOTS": "0"})
    assert get_settings({"OMNI_HOME": str(tmp_path)}).keep_snapshots == 3


def test_newest_valid_skips_a_snapshot_with_a_broken_manifest(tmp_path):
    settings = _home(tmp_path)
    (settings.home / "online" / STAMPS[-1] / "manifest.json").write_text("{trunc")
    notes = []
    assert newest_valid_snapshot(settings, notes.append).name == STAMPS[-2]
    assert len(notes) == 1 and "manifest.json is damaged" in notes[0]
