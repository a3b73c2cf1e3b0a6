"""`omni serve` and `omni bento`: the scoring service on the latest snapshot.

`omni serve` checks (and if needed rebuilds) the online snapshot *before* starting
BentoML: a service whose ``__init__`` fails is restarted by BentoML forever, so a broken
snapshot must be caught here, with a clear message.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from features.console import console, fail, step, user_errors, warn
from serving.cli.snapshot import Models, build_and_report, model_keys


def ready_snapshot(settings, rebuild: bool, models: tuple[str, ...] | None = None) -> Path:
    """The snapshot to serve: ``OMNI_SNAPSHOT``, else the newest valid one (a damaged one
    is passed over, saying so) if it was built from the current champions, else a new
    one. When the registry cannot be reached the newest valid snapshot is served as it
    is, with a warning; without any, serving is refused. Loaded once here to prove it
    works, and marked as in use so that snapshot retention keeps it."""
    from serving.online import (
        SnapshotError,
        is_current,
        load_snapshot,
        mark_in_use,
        newest_valid_snapshot,
        online_dir,
    )
    from serving.scoring import Scorer
    from training.tracking import RegistryUnreachable

    if settings.snapshot is not None:
        path = settings.snapshot
    else:
        path = newest_valid_snapshot(settings, note=warn)
        try:
            if rebuild or path is None or not is_current(settings, path, models):
                path = build_and_report(settings, models=models)
        except RegistryUnreachable as exc:
            if path is None:
                folder = online_dir(settings)
                raise fail(f"{exc}; and there is no valid snapshot in {folder}") from None
            if rebuild:
                raise fail(str(exc)) from None
            warn(f"{exc}; serving snapshot {path.name} as it is (champions not checked)")
    mark_in_use(settings, path)
    with step("check the snapshot loads"):
        try:
            Scorer(load_snapshot(path))
        except (SnapshotError, OSError, ValueError) as exc:
            raise fail(f"cannot serve snapshot {path}: {exc}") from None
    return path


def serve(
    ctx: typer.Context,
    port: Annotated[int, typer.Option(min=1, max=65535, help="HTTP port.")] = 3000,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    rebuild: Annotated[
        bool, typer.Option(help="Build a new snapshot even if the latest is current.")
    ] = False,
    models: Models = None,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            max=64,
            help="Worker processes. More than one needs OMNI_ONLINE_STORE=redis://... so "
            "that every worker sees every live event.",
        ),
    ] = 1,
) -> None:
    """Start the scoring service (BentoML) on the latest snapshot, rebuilding it first
    when the champions changed. Set OMNI_API_TOKEN to require a bearer token."""
    settings = ctx.obj
    if workers > 1 and not settings.online_store:
        raise fail(
            f"--workers {workers} needs OMNI_ONLINE_STORE=redis://host:port/db: the embedded "
            "journal has one writer, so live events would reach one worker only"
        )
    with user_errors():
        path = ready_snapshot(settings, rebuild, model_keys(models))
    auth = "bearer token required" if settings.api_token else "no token (set OMNI_API_TOKEN)"
    live = "live events in Redis" if settings.online_store else "live events journaled locally"
    console.print(
        f"serving {path.name} on http://{host}:{port} with {workers} worker(s), {live} "
        f"({auth}); Ctrl-C stops it"
    )
    from serving.bentoml_server import service_command

    cmd, env = service_command(
        path, port, host, follow_latest=settings.snapshot is None, workers=workers
    )
    sys.stdout.flush()
    # become BentoML (no parent left behind): signals such as a supervisor's SIGTERM
    # reach the server itself and stop it with its workers
    os.execve(sys.executable, cmd, env)


def bento(
    ctx: typer.Context,
    rebuild: Annotated[bool, typer.Option(help="Build a new snapshot first.")] = False,
) -> None:
    """Build a bento (`bentoml build`, offline) that runs without the MLflow server:
    requirements pinned to uv.lock, the current snapshot stored as a BentoML model
    (``omni_snapshot``) that the bento references. Run it: `bentoml serve <tag>`."""
    from serving.bento import (
        NO_TRACKING,
        BentoError,
        lock_drift,
        pinned_requirements,
        store_snapshot,
        write_bentofile,
    )

    settings = ctx.obj
    root = Path(__file__).resolve().parents[2]  # the source checkout (serving/cli/ is two down)
    if not (root / "bentofile.yaml").exists():
        raise fail(f"no bentofile.yaml in {root}: run `omni bento` from a source checkout")
    os.environ.update(NO_TRACKING)  # for the model store here and `bentoml build`
    try:
        lines = pinned_requirements(root)
    except BentoError as exc:
        raise fail(str(exc)) from None
    drift = lock_drift(lines)
    if drift:
        pins = ", ".join(drift)
        warn(f"installed versions differ from uv.lock; the bento pins the lock's: {pins}")
    with user_errors():
        path = ready_snapshot(settings, rebuild)
    with step("store the snapshot in BentoML's model store"):
        model, new = store_snapshot(path)
    console.print(f"  model {model}" + ("" if new else " (stored before, reused)"))
    with tempfile.TemporaryDirectory(prefix="omni-bento-") as folder:
        bentofile = write_bentofile(Path(folder), root, lines, model)
        with step("bentoml build"):  # raising inside the step: no ✓ for a failed build
            cmd = [sys.executable, "-m", "bentoml", "build", "-f", str(bentofile), "-o", "tag"]
            out = subprocess.run([*cmd, str(root)], capture_output=True, text=True)
            if out.returncode != 0:
                raise fail(f"bentoml build failed:\n{out.stderr[-2000:]}")
    tag = out.stdout.strip().splitlines()[-1].removeprefix("__tag__:")
    console.print(f"bento {tag} (snapshot {path.name})\n  run it: bentoml serve {tag}")
