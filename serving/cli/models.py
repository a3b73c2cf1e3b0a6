"""`omni models ...`: registered versions, their aliases and metrics; promote; roll back.

MLflow is imported inside commands (it takes seconds) so `--help` stays fast.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Annotated

import typer

from features.console import console, fail, print_json, user_errors

models_app = typer.Typer(
    help="Registered models (churn, next_best_channel, recommender): versions, aliases "
    "(champion serves, challenger lost the gate), promote, roll back.",
    no_args_is_help=True,
)


def _settings(ctx: typer.Context):
    from features.settings import get_settings

    return ctx.obj if ctx.obj is not None else get_settings()


@contextlib.contextmanager
def _registry_errors(settings) -> Iterator[None]:
    """Bad names / versions and a registry that cannot be reached exit 2 (via
    user_errors); other MLflow failures exit 1 with their message, without a traceback."""
    from training.tracking import registry_errors

    with user_errors():
        try:
            with registry_errors(settings):
                yield
        except Exception as exc:
            mlflow_errors = sys.modules.get("mlflow.exceptions")  # loaded if MLflow was used
            if mlflow_errors is None or not isinstance(exc, mlflow_errors.MlflowException):
                raise
            raise fail(f"MLflow: {str(exc).splitlines()[0][:500]}", code=1) from None


@models_app.command("list")
def list_cmd(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(help="Only this model.")] = None,
    json_: Annotated[
        bool, typer.Option("--json", help="Print every version in full as one JSON document.")
    ] = False,
) -> None:
    """Every registered version with its aliases, gate metric and the gate's reason."""
    settings = _settings(ctx)
    with _registry_errors(settings):
        from training.model_registry import list_models

        rows = list_models(settings, name)
    if json_:
        print_json(
            {
                "tracking_uri": settings.tracking_uri,
                "versions": [
                    {**vars(r), "aliases": list(r.aliases), "created": r.created.isoformat()}
                    for r in rows
                ],
            }
        )
        return
    if not rows:
        console.print(f"no registered models yet [dim]({settings.tracking_uri})[/]")
        return
    from rich import box
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for col, justify in (
        ("model", "left"),
        ("version", "right"),
        ("aliases", "left"),
        ("metric", "left"),
        ("value", "right"),
        ("created (UTC)", "left"),
    ):
        table.add_column(col, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    table.add_column("gate", ratio=1)
    for r in rows:
        aliases = ", ".join(f"@{a}" for a in r.aliases)
        table.add_row(
            r.name,
            str(r.version),
            f"[bold green]{aliases}[/]" if "champion" in r.aliases else aliases,
            r.metric or "",
            f"{r.value:.4g}" if r.value is not None else "",
            f"{r.created:%Y-%m-%d %H:%M}",
            r.reason or "",
        )
    console.print(table)


@models_app.command()
def promote(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="churn, next_best_channel or recommender.")],
    version: Annotated[str, typer.Argument(help="Version number (3 or v3).")],
) -> None:
    """Make VERSION the champion by hand (the replaced champion is kept for rollback)."""
    settings = _settings(ctx)
    with _registry_errors(settings):
        from training import model_registry

        console.print(model_registry.promote(settings, name, version))


@models_app.command()
def rollback(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="churn, next_best_channel or recommender.")],
) -> None:
    """Give @champion back to the version the current champion replaced."""
    settings = _settings(ctx)
    with _registry_errors(settings):
        from training import model_registry

        console.print(model_registry.rollback(settings, name))
