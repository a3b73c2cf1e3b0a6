"""The data home under a careless umask and under kill -9 (issue 14).

One small home (300 synthetic customers, three trained models, a snapshot, batch scores)
is built under umask 022 with the real `omni` commands; after each command every file
and folder in it must be the owner's only. Copies of it are then handed to `omni score`,
`omni snapshot build` and `omni train churn`, each killed with SIGKILL at random moments
inside its real duration; after each kill the home must read back as the old or the new
state, never a mix, and no MLflow run may stay RUNNING after the next command.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from killing import kill_loop, omni_process, wait_each

from features.settings import get_settings
from serving.batch import read_output
from serving.online import (
    LATEST,
    latest_snapshot,
    load_snapshot,
    snapshot_folders,
    verify_snapshot,
)

pytestmark = pytest.mark.slow
LANDED = 20  # kills per writer that must land while it runs
SIDE_BY_SIDE = 2  # runs killed at once, each on its own home (killing.kill_each_at)
START_S = 1.5  # no kill before: the interpreter and imports, nothing written yet
SLOW_RENAMES = 0.5  # each rename of the writer waits this long first: wider windows
TRAIN = ("train", "churn", "--cutoffs", "1")  # the quickest training that logs and registers
WRITERS = (("score",), ("snapshot", "build"), TRAIN)
PREPARE = (
    ("data", "synth", "--customers", "300", "--days", "365"),
    ("train", "all"),
    ("snapshot", "build"),
    ("score",),
)


@dataclass
class Prepared:
    """The prepared home, what was too open after each command, how long commands took."""

    home: Path
    loose: dict[str, list[str]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def _run(*args: str, home: Path, umask: int = -1, **env: str) -> float:
    """Run `omni` to the end, under ``umask`` (-1: this process's); returns the seconds it
    took."""
    environ = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    environ |= {"OMNI_HOME": str(home), "COLUMNS": "120", **env}
    t0 = time.perf_counter()
    res = subprocess.run(
        [sys.executable, "-m", "serving.cli", *args],
        capture_output=True,
        text=True,
        env=environ,
        timeout=600,
        umask=umask,
    )
    assert res.returncode == 0, f"omni {' '.join(args)}:\n{res.stdout[-3000:]}{res.stderr[-3000:]}"
    return time.perf_counter() - t0


def _loose(home: Path) -> list[str]:
    """The home and everything in it that group or others may read (symlinks have no
    mode of their own), as ``path mode``."""
    paths = [home]
    for root, dirs, files in os.walk(home):
        paths += [Path(root, name) for name in (*dirs, *files)]
    found = []
    for path in paths:
        mode = path.lstat().st_mode
        if not stat.S_ISLNK(mode) and stat.S_IMODE(mode) & 0o077:
            found.append(f"{path.relative_to(home)} {stat.S_IMODE(mode):o}")
    return found


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Prepared:
    """The small home, built under umask 022 (as a careless shell would have it)."""
    out = Prepared(tmp_path_factory.mktemp("safety") / "home")
    for command in PREPARE:
        name = " ".join(command[:2])
        out.seconds[name] = _run(*command, home=out.home, umask=0o022)
        out.loose[name] = _loose(out.home)
    for command in WRITERS:  # how long each writer takes with slow renames, in copies
        out.seconds[command[0]] = _seconds_side_by_side(command, out)
    return out


def test_the_home_is_the_owners_only_whatever_the_umask(prepared):
    # issue 14: the home holds hashed e-mails and phone numbers (store, quarantine) and
    # the registry; with umask 022 all of it was readable by every user of the machine
    assert prepared.loose == {" ".join(c[:2]): [] for c in PREPARE}


def _copy(prepared: Prepared, folder: Path) -> Path:
    home = folder / "home"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(prepared.home, home, symlinks=True)
    return home


def _as_older_code_left_it(home: Path) -> None:
    """`scores/latest` as a real folder (older code replaced it in place), no runs/."""
    latest = home / "scores" / "latest"
    if latest.is_symlink():
        real = latest.resolve()
        latest.unlink()
        shutil.copytree(real, latest)
        shutil.rmtree(home / "scores" / "runs")


def _kill_loop(command: tuple[str, ...], seconds: float, check, seed: int, prepared) -> Path:
    """Start ``command`` on fresh copies of the prepared home, :data:`SIDE_BY_SIDE` at once,
    and SIGKILL each at a random moment inside its real duration (``seconds``, measured
    side by side with the same slow renames; the first :data:`START_S` are the interpreter
    starting, where there is nothing to break), then ``check(home)`` each; until
    :data:`LANDED` kills landed while a run ran. Returns the last home."""
    homes: dict[int, Path] = {}

    def start(i: int) -> subprocess.Popen:
        homes[i] = home = _copy(prepared, prepared.home.parent / f"killed-{i % SIDE_BY_SIDE}")
        if command == ("score",) and i % 2 == 0:
            _as_older_code_left_it(home)  # a home written by older code keeps working
        return omni_process(*command, home=home, slow_renames=SLOW_RENAMES)

    landed = attempts = 0
    while landed < LANDED:
        assert attempts < 2 * LANDED, f"only {landed} of {attempts} kills landed mid-run"
        report = kill_loop(
            lambda i, first=attempts: start(first + i),
            lambda i, first=attempts: check(homes[first + i]),
            kills=SIDE_BY_SIDE,
            min_delay=START_S,
            max_delay=seconds,
            seed=seed + attempts,
            side_by_side=SIDE_BY_SIDE,
        )
        landed += report.killed
        attempts += SIDE_BY_SIDE
    return homes[attempts - 1]


def _seconds_side_by_side(command: tuple[str, ...], prepared: Prepared) -> float:
    """How long ``command`` takes on copies of the prepared home with slow renames,
    :data:`SIDE_BY_SIDE` at once (as the kill loops run it): the longest run."""
    runs, logs = [], []
    for lane in range(SIDE_BY_SIDE):
        trial = prepared.home.parent / f"trial-{lane}"
        shutil.copytree(prepared.home, trial, symlinks=True)
        logs.append(trial.parent / f"trial-{lane}.log")
        with logs[-1].open("w") as out:  # the child has its own copy of the descriptor
            proc = omni_process(*command, home=trial, slow_renames=SLOW_RENAMES, output=out)
        runs.append((proc, time.perf_counter()))
    ended = wait_each(runs, timeout=600)
    for lane, ((code, _), log) in enumerate(zip(ended, logs, strict=True)):
        assert code == 0, f"omni {' '.join(command)}:\n{log.read_text()[-3000:]}"
        shutil.rmtree(prepared.home.parent / f"trial-{lane}")
        log.unlink()
    return max(seconds for _, seconds in ended)


def _complete_scores(folder: Path) -> dict:
    """The output a reader gets from ``folder``: complete, and one run's (the manifest
    and both Parquet files carry the same run's ``created``), never a mix."""
    real = folder.resolve()  # the version a reader lands on
    manifest = json.loads((real / "manifest.json").read_text())
    out = read_output(real)
    assert len(out["customers"]) == out["customers"]["customer_id"].nunique()
    assert len(out["customers"]) == manifest["customers"]
    for name in ("customers", "recommendations"):
        meta = json.loads(pq.read_schema(real / f"{name}.parquet").metadata[b"omni_batch"])
        assert meta == manifest, f"{name}.parquet is from another run than manifest.json"
    assert len(out["recommendations"]) > 0
    return out


def test_killed_score_leaves_the_old_or_the_new_scores(prepared):
    # issue 14: the folder swap took two renames; a kill between them left scores/latest
    # missing with both versions in hidden temp folders
    old = _complete_scores(prepared.home / "scores" / "latest").get("created", "")

    def check(home: Path) -> None:
        scores = home / "scores"
        moved = list((scores / "runs").glob("*-older"))
        if not (scores / "latest").exists() and moved:
            # the one moment a home written by older code has no `latest`: its real folder
            # was moved into runs/ and the link not yet made (the next run makes it)
            assert [_complete_scores(m).get("created", "") for m in moved] == [old]
        else:
            now = _complete_scores(scores / "latest").get("created", "")
            assert now == old or now > old
        for version in (scores / "runs").glob("[0-9]*"):  # every visible version is whole
            _complete_scores(version)

    last = _kill_loop(("score",), prepared.seconds["score"], check, 141, prepared)
    # the next run cleans up what the killed ones left and keeps OMNI_KEEP_SCORES versions
    _run("score", home=last)
    scores = last / "scores"
    assert not [p.name for p in scores.rglob(".*") if ".tmp-" in p.name]
    assert len(list((scores / "runs").iterdir())) == 2
    _complete_scores(scores / "latest")


def _whole_snapshot(path: Path) -> None:
    verify_snapshot(path)
    load_snapshot(path)


def test_killed_snapshot_build_leaves_latest_on_a_whole_snapshot(prepared):
    # issue 14: a killed build left `online/.<stamp>.tmp-*` folders behind for good, and
    # old snapshots were never removed
    old = (prepared.home / "online" / LATEST).read_text().strip()

    def check(home: Path) -> None:
        settings = get_settings({"OMNI_HOME": str(home)})
        latest = latest_snapshot(settings)
        assert latest.name == old or latest.name > old
        _whole_snapshot(latest)
        for folder in snapshot_folders(settings):  # no half-written snapshot in sight
            verify_snapshot(folder)

    last = _kill_loop(("snapshot", "build"), prepared.seconds["snapshot"], check, 142, prepared)
    # the next build removes the leftovers and keeps OMNI_KEEP_SNAPSHOTS snapshots
    settings = get_settings({"OMNI_HOME": str(last)})
    for stamp in ("20200101T000000000000", "20200102T000000000000"):  # two old builds
        shutil.copytree(latest_snapshot(settings), last / "online" / stamp)
    _run("snapshot", "build", home=last, OMNI_KEEP_SNAPSHOTS="2")
    assert not [p.name for p in (last / "online").iterdir() if ".tmp-" in p.name]
    left = snapshot_folders(settings)
    assert len(left) == 2 and left[0] == latest_snapshot(settings)
    _whole_snapshot(left[0])


def _churn_champion(settings) -> int:
    """The version behind churn's @champion, checked to be complete: registered (READY),
    and its model downloads and unpickles the way the snapshot build loads it."""
    import pickle
    import tempfile

    import mlflow
    import yaml
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    from training.tracking import use_tracking

    client = mlflow.MlflowClient(use_tracking(settings))
    version = client.get_model_version_by_alias("churn", "champion")
    assert version.status == "READY"
    repo = get_artifact_repository(f"models:/churn/{version.version}")
    with tempfile.TemporaryDirectory() as tmp:
        conf = yaml.safe_load(Path(repo.download_artifacts("MLmodel", tmp)).read_text())
        pickled = conf["flavors"]["python_function"]["python_model"]
        with open(repo.download_artifacts(pickled, tmp), "rb") as f:
            assert pickle.load(f).model is not None
    return int(version.version)


def _running(settings) -> list[str]:
    """Ids of the RUNNING runs in the home's omni experiments."""
    import mlflow

    from training.tracking import EXPERIMENT_PREFIX, use_tracking

    client = mlflow.MlflowClient(use_tracking(settings))
    experiments = client.search_experiments(filter_string=f"name LIKE '{EXPERIMENT_PREFIX}%'")
    runs = client.search_runs(
        [e.experiment_id for e in experiments], filter_string="attributes.status = 'RUNNING'"
    )
    return [r.info.run_id for r in runs]


def test_killed_training_leaves_a_whole_registry_and_no_run_running(prepared):
    # issue 14: a run killed mid-way stayed RUNNING; @champion must never point at a
    # half-registered model
    from training.tracking import fail_abandoned_runs

    settings = get_settings({"OMNI_HOME": str(prepared.home)})
    champion = _churn_champion(settings)
    assert _running(settings) == []

    def check(home: Path) -> None:
        settings = get_settings({"OMNI_HOME": str(home)})
        assert _churn_champion(settings) >= champion  # the old one or a newer complete one
        fail_abandoned_runs(settings)  # what the next training does first
        assert _running(settings) == []

    _kill_loop(TRAIN, prepared.seconds["train"], check, 143, prepared)
    # Whether a random kill lands while a run is RUNNING depends on timing (none did in one
    # full-suite run): the next test kills a run known to be RUNNING, deterministically.


def test_the_next_training_marks_a_killed_run_failed_but_not_a_live_one(prepared, tmp_path):
    # issue 14: no MLflow run stays RUNNING longer than the next command; a concurrent live
    # training is not touched
    import mlflow

    from training.tracking import fail_abandoned_runs

    home = _copy(prepared, tmp_path)
    settings = get_settings({"OMNI_HOME": str(home)})
    proc = omni_process(*TRAIN, home=home)
    try:
        deadline = time.monotonic() + 120
        while not (running := _running(settings)):
            assert proc.poll() is None and time.monotonic() < deadline, "no run started"
            time.sleep(0.2)
        assert fail_abandoned_runs(settings) == []  # it lives: left alone
        assert _running(settings) == running
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    _run(*TRAIN, home=home)
    assert _running(settings) == []
    run = mlflow.MlflowClient(settings.tracking_uri).get_run(running[0])
    assert run.info.status == "FAILED" and "omni.abandoned" in run.data.tags
