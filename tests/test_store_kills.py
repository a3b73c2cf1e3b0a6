"""Kill -9 `omni data load` (replace and --append) at random moments (issue 14): after every
kill the store reads back as exactly the old or exactly the new state, never a mix, and
the next write succeeds and removes what the killed one left behind."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path

import pandas as pd
import pytest
from killing import kill_loop, omni_process, wait_each
from typer.testing import CliRunner

from features.settings import get_settings
from features.sources.base import write_source
from features.sources.synthetic import generate
from features.store.events import read_store
from features.store.ingest import ingest

KILLS = 20
SIDE_BY_SIDE = 2  # writers killed at once, each on its own home (see killing.kill_each_at)
RENAME_DELAY = 0.4  # seconds every rename of the writer waits first: widens the windows


def _digest(frame: pd.DataFrame) -> str:
    """A hash of the rows as a multiset: the same rows in any order give the same hash."""
    rows = frame[sorted(frame.columns)].astype("str")
    total = pd.util.hash_pandas_object(rows, index=False).to_numpy().sum(dtype="uint64")
    return hashlib.sha256(total.tobytes()).hexdigest()[:16]


def fingerprint(store: Path) -> dict[str, object]:
    """Event count and a content hash of the events and of each dimension table."""
    data = read_store(store)
    out: dict[str, object] = {"n_events": len(data.events)}
    return out | {name: _digest(table) for name, table in data.tables().items()}


def unlisted_files(store: Path) -> set[str]:
    """Files in the store folder that its manifest does not list (leftovers)."""
    manifest = json.loads((store / "manifest.json").read_text())
    listed = {p["path"] for p in manifest["events"]} | {
        t["path"] for t in manifest["tables"].values()
    }
    listed |= {manifest["identity"]["path"], "manifest.json", ".write.lock"}
    on_disk = {p.relative_to(store).as_posix() for p in store.rglob("*") if p.is_file()}
    return on_disk - listed


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, Path]:
    """Two small synthetic sources (written once) and a home holding the first, loaded."""
    root = tmp_path_factory.mktemp("kills")
    old = write_source(generate(n_customers=200, days=60, seed=1), root / "old")
    new = write_source(generate(n_customers=200, days=60, seed=2, end="2026-03-01"), root / "new")
    ingest(old, get_settings({"OMNI_HOME": str(root / "base")}))
    return {"old": old, "new": new, "base": root / "base"}


def _summary_events(home: Path) -> int:
    from serving.cli.main import app

    res = CliRunner().invoke(app, ["--home", str(home), "data", "summary"])
    assert res.exit_code == 0, res.output
    return int(res.output.split(" events from ")[0].rsplit(", ", 1)[1].replace(",", ""))


def _kill_loop(sources: dict[str, Path], tmp_path: Path, append: bool, seed: int) -> None:
    args = ["data", "load", str(sources["new"]), *(["--append"] if append else [])]
    old_state = fingerprint(sources["base"] / "store")

    def mark(i: int) -> Path | None:
        """Every other run is killed a moment after its first rename (the manifest's
        switch): its new files are all written then, whatever its imports took."""
        return tmp_path / f"mark{i}" if i % 2 else None

    def writer(home: Path, marked: Path | None):
        env = {"OMNI_TEST_RENAME_MARK": str(marked)} if marked else {}
        return omni_process(*args, home=home, slow_renames=RENAME_DELAY, **env)

    # The new state, from runs that are not killed: how long such a run takes, run side by
    # side as the kills' runs are, and how long it goes on after its first rename.
    runs = []
    for run in range(SIDE_BY_SIDE):
        full = tmp_path / f"full{run}"
        shutil.copytree(sources["base"], full)
        runs.append((writer(full, tmp_path / f"mark-full{run}"), time.perf_counter()))
    ended = wait_each(runs, timeout=120)
    assert [code for code, _ in ended] == [0] * SIDE_BY_SIDE
    after_first_rename = min(
        time.time() - (tmp_path / f"mark-full{run}").stat().st_mtime for run in range(SIDE_BY_SIDE)
    )
    durations = [seconds for _, seconds in ended]
    new_state = fingerprint(full / "store")
    assert new_state != old_state

    outcomes: dict[int, str] = {}
    leftovers: dict[int, int] = {}

    def start(i: int):
        home = tmp_path / f"home{i}"
        shutil.copytree(sources["base"], home)
        return writer(home, mark(i))

    def check(i: int) -> None:
        home = tmp_path / f"home{i}"
        state = fingerprint(home / "store")
        assert state in (old_state, new_state), f"kill {i}: a mix of old and new: {state}"
        outcomes[i] = "old" if state == old_state else "new"
        assert _summary_events(home) == state["n_events"]
        leftovers[i] = len(unlisted_files(home / "store"))
        # the next write succeeds, ends in the new state and leaves nothing unlisted
        ingest(
            sources["new"],
            get_settings({"OMNI_HOME": str(home)}),
            mode="append" if append else "replace",
        )
        assert fingerprint(home / "store") == new_state
        assert not unlisted_files(home / "store")
        shutil.rmtree(home)

    # Kills side by side: every other one at a random moment of its run (a run's length
    # re-estimated from the runs that beat their kill: the machine may be busier or idler
    # than at the start), the others at a random moment after their first rename.
    killed = attempt = 0
    while killed < KILLS and attempt < KILLS + 15:
        first = attempt
        attempt += SIDE_BY_SIDE
        seconds = min(durations)
        report = kill_loop(
            lambda i, first=first: start(first + i),
            lambda i, first=first: check(first + i),
            kills=SIDE_BY_SIDE,
            min_delay=0.3 * seconds,
            max_delay=0.95 * seconds,
            seed=seed + first,
            side_by_side=SIDE_BY_SIDE,
            mark=lambda i, first=first: mark(first + i),
            after_mark=(0.0, 0.95 * after_first_rename),
        )
        killed += report.killed
        durations += report.lengths
    # Measured (4 runs, 2 of them beside two busy cores): 14-17 of 20 kills left the old
    # state, the others the new one (killed after the switch, some before the clean-up).
    assert killed >= KILLS, (killed, attempt, durations)
    # A kill after the first rename that left the old state left the killed write's files
    # beside it (the aim works), and some did (kills landed mid-write).
    aimed = [i for i in outcomes if mark(i)]
    assert all(leftovers[i] > 0 for i in aimed if outcomes[i] == "old"), (outcomes, leftovers)
    assert any(outcomes[i] == "old" for i in aimed), (outcomes, leftovers)


@pytest.mark.slow
def test_kill_replace_load_at_random_moments(sources, tmp_path):
    # issue 14: replace swapped the store folder with two renames; a kill between them
    # left no store at all.
    _kill_loop(sources, tmp_path, append=False, seed=14)


@pytest.mark.slow
def test_kill_append_at_random_moments(sources, tmp_path):
    # issue 14: an append moved its parts in one rename each; a kill between them left
    # part of the events appended.
    _kill_loop(sources, tmp_path, append=True, seed=41)
