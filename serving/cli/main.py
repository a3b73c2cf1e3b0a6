"""`omni`: the command-line entry point; each command or group is a module of serving/cli.

Imports stay light here so `omni --help` answers in well under a second.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path
from typing import Annotated

import typer

from serving.cli.data import app as data_app
from serving.cli.events import app as events_app
from serving.cli.features import app as features_app
from serving.cli.journeys import app as journeys_app
from serving.cli.models import models_app
from serving.cli.monitor import monitor
from serving.cli.report import app as report_app
from serving.cli.run import run
from serving.cli.score import score
from serving.cli.serve import bento, serve
from serving.cli.snapshot import snapshot_app
from serving.cli.train import app as train_app

app = typer.Typer(
    name="omni",
    help="Omnichannel personalization: unified events, features, churn / next-best-channel / "
    "recommendation models in MLflow, served with BentoML.\n\n"
    "Start with `omni run` (everything on synthetic data, nothing to set up).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(data_app, name="data")
app.add_typer(events_app, name="events")
app.add_typer(features_app, name="features")
app.add_typer(train_app, name="train")
app.add_typer(models_app, name="models")
app.add_typer(snapshot_app, name="snapshot")
app.add_typer(report_app, name="report")
app.add_typer(journeys_app, name="journeys")
app.command()(score)
app.command()(serve)
app.command()(bento)
app.command()(monitor)
app.command()(run)


def _print_version(asked: bool) -> None:
    if asked:
        from features.version import package_version

        typer.echo(f"omni {package_version()}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    version: Annotated[  # acted on by its callback
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
    home: Annotated[
        Path | None,
        typer.Option(
            help="Data home (raw data, events store, MLflow SQLite) (env OMNI_HOME; "
            "default ./omni_home).",
            show_default=False,
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            help="Settings file (TOML, keys as in docs/settings.md) (env OMNI_CONFIG; "
            "default omni.toml in the home, if there); environment variables override it.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Resolve settings once per command: defaults, then the settings file, then
    environment variables. The home holds customers' identifiers: everything a command
    writes is readable by its owner only (umask 077), and an existing home is closed to
    others (0700)."""
    from features.console import fail
    from features.settings import CONFIG_ENV, get_settings

    os.umask(0o077)
    if config is not None:  # for this process and the ones it starts (omni serve's workers)
        os.environ[CONFIG_ENV] = str(config.expanduser().resolve())
    if home is not None:  # the same: the service `omni run` and `omni serve` start reads it
        os.environ["OMNI_HOME"] = str(home.expanduser().resolve())
    try:
        settings = get_settings(os.environ)
    except ValueError as exc:  # a bad OMNI_* value or settings file: one line, exit 2
        raise fail(str(exc)) from None
    ctx.obj = settings.with_home(home) if home is not None else settings
    close_home(ctx.obj.home)


def close_home(home: Path) -> None:
    """Make an existing home folder of ours owner-only (0700); files that older versions
    wrote with wider modes are then out of others' reach too."""
    with contextlib.suppress(OSError):
        info = home.stat()
        if stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and info.st_mode & 0o077:
            home.chmod(0o700)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
