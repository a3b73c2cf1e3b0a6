"""`omni snapshot build`, `omni serve` and `omni bento`: from champions to a running service.

`omni serve` checks (and if needed rebuilds) the online snapshot *before* starting
BentoML: a service whose ``__init__`` fails is restarted by BentoML forever, so a broken
snapshot must be caught here, with a clear message.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from features.console import console, err_console, fail, say, step, user_errors

snapshot_app = typer.Typer(
    help="The online snapshot the service and batch scoring read.", no_args_is_help=True
)
BENTO_DIR = "bento_snapshot"
SERVICE = "serving.service:Personalization"
ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@snapshot_app.command("build")
def snapshot_build(
    ctx: typer.Context,
    as_of: Annotated[
        str | None,
        typer.Option(help="Cutoff (default: the first midnight after the newest event)."),
    ] = None,
    refresh_recommender: Annotated[
        bool,
        typer.Option(help="Rebuild the recommender's ALS factors and histories at the cutoff."),
    ] = True,
    serving: Annotated[
        bool,
        typer.Option(
            help="Precompute what real-time requests read (ranked lists per channel); "
            "--no-serving for a batch-only snapshot."
        ),
    ] = True,
    compile_forests: Annotated[
        bool | None,
        typer.Option(
            "--compile-forests/--no-compile-forests",
            help="Compile the channel model and the ranker to machine code for faster batch "
            "scoring (same results; ~0.1 s a tree). Default: from 100,000 customers.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Build a snapshot from the @champion models and the events store."""
    with user_errors():
        path = build(ctx.obj, as_of, refresh_recommender, serving, compile_forests)
    console.print(f"snapshot: {path}")


def warn(message: str) -> None:
    """One line on stderr, never wrapped."""
    err_console.print(f"[bold yellow]warning:[/] {escape(message)}", soft_wrap=True)


def build(
    settings,
    as_of: str | None = None,
    refresh_recommender: bool = True,
    serving: bool = True,
    compile_forests: bool | None = None,
) -> Path:
    """Build and report a snapshot (shared by `omni snapshot build`, `omni serve`, the main
    job)."""
    from serving.online import SnapshotError, build_snapshot
    from training.tracking import registry_errors

    with step("build the online snapshot"), registry_errors(settings):
        try:
            return build_snapshot(
                settings, as_of, refresh_recommender, say, serving, compile_forests
            )
        except SnapshotError as exc:
            raise fail(str(exc)) from None


def ready_snapshot(settings, rebuild: bool) -> Path:
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

    if os.environ.get("OMNI_SNAPSHOT"):
        path = Path(os.environ["OMNI_SNAPSHOT"])
    else:
        path = newest_valid_snapshot(settings, note=warn)
        try:
            if rebuild or path is None or not is_current(settings, path):
                path = build(settings)
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
) -> None:
    """Start the scoring service (BentoML) on the latest snapshot, rebuilding it first
    when the champions changed. Set OMNI_API_TOKEN to require a bearer token."""
    settings = ctx.obj
    with user_errors():
        path = ready_snapshot(settings, rebuild)
    auth = "bearer token required" if settings.api_token else "no token (set OMNI_API_TOKEN)"
    console.print(f"serving {path.name} on http://{host}:{port}  ({auth}); Ctrl-C stops it")
    env = {**os.environ, **ONE_THREAD, "OMNI_SNAPSHOT": str(path)}
    # serving.bentoml_server: bentoml with Prometheus metrics in a folder of its own
    cmd = [sys.executable, "-m", "serving.bentoml_server", "serve", SERVICE]
    cmd += ["--port", str(port), "--host", host]
    sys.stdout.flush()
    # become BentoML (no parent left behind): signals such as a supervisor's SIGTERM
    # reach the server itself and stop it with its workers
    os.execve(sys.executable, cmd, env)


def bento(
    ctx: typer.Context,
    rebuild: Annotated[bool, typer.Option(help="Build a new snapshot first.")] = False,
) -> None:
    """Build a bento (`bentoml build`, offline) that carries the current snapshot, so it
    runs without the MLflow server: `bentoml serve omni_personalization:latest`."""
    settings = ctx.obj
    root = Path(__file__).resolve().parent.parent
    if not (root / "bentofile.yaml").exists():
        raise fail(f"no bentofile.yaml in {root}: run `omni bento` from a source checkout")
    with user_errors():
        path = ready_snapshot(settings, rebuild)
    target = root / BENTO_DIR
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(path, target)
    with step("bentoml build"):  # raising inside the step: no ✓ for a failed build
        out = subprocess.run(
            [sys.executable, "-m", "bentoml", "build", "-o", "tag", str(root)],
            capture_output=True,
            text=True,
            env={**os.environ, "BENTOML_DO_NOT_TRACK": "True"},
        )
        if out.returncode != 0:
            raise fail(f"bentoml build failed:\n{out.stderr[-2000:]}")
    tag = out.stdout.strip().splitlines()[-1].removeprefix("__tag__:")
    console.print(f"bento {tag} (snapshot {path.name})\n  run it: bentoml serve {tag}")
