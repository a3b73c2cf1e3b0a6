"""`omni snapshot build`: the online snapshot the service and batch scoring read."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from features.console import console, fail, say, step, user_errors

Models = Annotated[
    str | None,
    typer.Option(
        "--models",
        help="Comma-separated models to use: churn, next_best_channel, recommender "
        "(default: every model that has a @champion).",
    ),
]


def model_keys(models: str | None) -> tuple[str, ...] | None:
    """``--models a,b`` as snapshot keys (ValueError naming the option when unknown)."""
    from serving.online import check_model_keys

    return None if models is None else check_model_keys(models.split(","))


snapshot_app = typer.Typer(
    help="The online snapshot the service and batch scoring read.", no_args_is_help=True
)


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
    models: Models = None,
) -> None:
    """Build a snapshot from the @champion models and the events store."""
    with user_errors():
        path = build_and_report(ctx.obj, as_of, refresh_recommender, serving, model_keys(models))
    console.print(f"snapshot: {path}")


def build_and_report(
    settings,
    as_of: str | None = None,
    refresh_recommender: bool = True,
    serving: bool = True,
    models: tuple[str, ...] | None = None,
) -> Path:
    """Build and report a snapshot (shared by `omni snapshot build`, `omni serve`, the main
    job)."""
    from serving.live.compact import compact_first
    from serving.online import SnapshotError, build_snapshot
    from training.tracking import registry_errors

    compact_first(settings, say)  # the snapshot's features see the live events
    with step("build the online snapshot"), registry_errors(settings):
        try:
            return build_snapshot(settings, as_of, refresh_recommender, say, serving, models)
        except SnapshotError as exc:
            raise fail(str(exc)) from None
