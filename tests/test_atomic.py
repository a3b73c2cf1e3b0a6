"""Atomic writes (features/atomic.py): a replaced folder is one pointer switch, leftovers of
killed writers go away, old versions are pruned but never the one in sight (issue 14)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from killing import SLOW_RENAMES, kill_at

from features.atomic import atomic_folder, atomic_path, prune_versions, remove_leftovers

ROOT = Path(__file__).resolve().parent.parent

# A writer that replaces the folder `target` again and again with two files of the same
# generation number, through the public atomic_path (what every caller used before).
WRITER = """
import sys
from pathlib import Path
from features.atomic import atomic_path
target, first, n = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
for i in range(first, first + n):
    with atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "a.txt").write_text(str(i))
        (tmp / "b.txt").write_text(str(i))
"""


def _write(target: Path, generation: int) -> None:
    with atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "a.txt").write_text(str(generation))
        (tmp / "b.txt").write_text(str(generation))


def _writer(target: Path, first: int, n: int, delay: float) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SLOW_RENAMES), str(ROOT)])}
    env["OMNI_TEST_RENAME_DELAY"] = str(delay)
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, str(target), str(first), str(n)],
        env=env,
        start_new_session=True,
    )


def _generation(target: Path) -> int:
    """The folder's generation, read the way a consumer reads a version: the link resolved
    once, then its files (read path by path through the link, two files can straddle a
    switch: a preempted reader did, once in a loaded run); fails when the folder is missing
    or its two files come from different writes."""
    version = target.resolve(strict=True)  # FileNotFoundError when missing
    a = (version / "a.txt").read_text()
    b = (version / "b.txt").read_text()
    assert a == b, f"mixed versions: a.txt {a}, b.txt {b}"
    return int(a)


@pytest.mark.slow
def test_replacing_a_folder_never_leaves_it_missing(tmp_path):
    # issue 14: atomic_path swapped folders with two renames; in between the folder was gone
    target = tmp_path / "latest"
    _write(target, 0)
    _write(target, 1)  # a home that has been written before
    proc = _writer(target, 2, 4, delay=0.3)  # every rename sleeps 0.3 s first
    seen, missing = set(), 0
    try:
        while proc.poll() is None:
            try:
                seen.add(_generation(target))
            except FileNotFoundError:
                missing += 1
            time.sleep(0.005)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert proc.returncode == 0
    assert missing == 0, f"{target} was missing {missing} times while being replaced"
    assert _generation(target) == 5 and len(seen) >= 2


@pytest.mark.slow
def test_killed_writer_leaves_the_old_or_the_new_folder(tmp_path):
    # issue 14: a kill between the two renames left the folder missing, both versions hidden
    target = tmp_path / "latest"
    _write(target, 0)
    _write(target, 1)
    rng = np.random.default_rng(14)
    generation, killed = 1, 0
    for i in range(12):
        proc = _writer(target, 100 * (i + 1), 1, delay=0.15)
        killed += kill_at(proc, float(rng.uniform(0.0, 0.6)))
        now = _generation(target)  # raises if missing or mixed
        assert now in (generation, 100 * (i + 1))
        generation = now
    assert killed >= 4  # the kills did land mid-write
    _write(target, 9)  # the next writer removes what the killed ones left
    assert not [p.name for p in tmp_path.rglob("*") if ".tmp-" in p.name]


def test_leftovers_of_ended_writers_are_removed_and_live_ones_kept(tmp_path):
    # issue 14: `.latest.tmp-*` folders of killed runs stayed forever
    ended = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        text=True,
        capture_output=True,
        check=True,
    )
    dead_pid = int(ended.stdout)
    live = tmp_path / f".latest.tmp-{os.getpid()}-0000beef"  # a writer still at work
    older = tmp_path / ".latest.tmp-1a2b3c4d"  # named by older code, which wrote no pid
    gone = tmp_path / f".latest.tmp-{dead_pid}-0000dead"
    other = tmp_path / f".other.tmp-{dead_pid}-0000dead"  # another target's: not ours to take
    for folder in (live, older, gone, other):
        folder.mkdir()
        (folder / "customers.parquet").write_bytes(b"x")
    _write(tmp_path / "latest", 1)
    assert live.exists() and other.exists()
    assert not older.exists() and not gone.exists()
    assert remove_leftovers(tmp_path) == [other.name]


def test_a_folder_written_by_older_code_is_taken_over(tmp_path):
    # issue 14: a real `latest` folder from older code keeps working and becomes a version
    scores = tmp_path / "scores"
    legacy = scores / "latest"
    legacy.mkdir(parents=True)
    (legacy / "a.txt").write_text("7")
    (legacy / "b.txt").write_text("7")
    with atomic_folder(legacy, scores / "runs", keep=2) as tmp:
        (tmp / "a.txt").write_text("8")
        (tmp / "b.txt").write_text("8")
    assert legacy.is_symlink() and _generation(legacy) == 8
    versions = sorted((scores / "runs").iterdir())
    assert [_generation(v) for v in versions] == [7, 8]
    assert os.readlink(legacy) == os.path.join("runs", versions[-1].name)  # relative link


def test_failed_write_keeps_the_previous_version(tmp_path):
    link = tmp_path / "latest"
    with atomic_folder(link, tmp_path / "runs") as tmp:
        (tmp / "a.txt").write_text("1")
        (tmp / "b.txt").write_text("1")
    with pytest.raises(RuntimeError), atomic_folder(link, tmp_path / "runs") as tmp:
        (tmp / "a.txt").write_text("2")
        raise RuntimeError("validation failed")
    assert _generation(link) == 1
    assert len(list((tmp_path / "runs").iterdir())) == 1


def test_old_versions_are_pruned_but_never_one_in_sight(tmp_path):
    runs = tmp_path / "runs"
    for name in ("20250101T000000000000", "20250102T000000000000", "20250103T000000000000"):
        (runs / name).mkdir(parents=True)
    (tmp_path / "pinned").symlink_to("runs/20250101T000000000000")  # another output's
    (tmp_path / "latest").symlink_to("runs/20250103T000000000000")
    removed = prune_versions(tmp_path / "latest", runs, keep=1)
    assert removed == ["20250102T000000000000"]
    assert sorted(p.name for p in runs.iterdir()) == [
        "20250101T000000000000",
        "20250103T000000000000",
    ]
