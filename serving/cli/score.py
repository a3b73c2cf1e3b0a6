"""`omni score`: batch scoring of every customer, locally or on Spark."""

from __future__ import annotations

import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from features.console import console, fail, say, user_errors
from serving.cli.snapshot import Models, model_keys


class Engine(StrEnum):
    local = "local"
    spark = "spark"


def score(
    ctx: typer.Context,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Output folder (default: <home>/scores/latest): a symlink to the newest run, "
            "kept in runs/ beside it."
        ),
    ] = None,
    as_of: Annotated[
        str | None,
        typer.Option(help="Cutoff (default: the first midnight after the newest event)."),
    ] = None,
    k: Annotated[int, typer.Option(min=1, max=100, help="Products per customer.")] = 10,
    only_changed: Annotated[
        bool,
        typer.Option(
            "--only-changed",
            help="Rescore only customers with events since the previous output's cutoff.",
        ),
    ] = False,
    engine: Annotated[
        Engine, typer.Option(help="local (one machine) or spark (pip install '.[spark]').")
    ] = Engine.local,
    spark_master: Annotated[
        str | None,
        typer.Option(help="Spark master URL (default: local[*], or what spark-submit set)."),
    ] = None,
    models: Models = None,
) -> None:
    """Score every customer: churn probability and band, channel probabilities after
    consent, top-k products with reasons; the service's code, rules and numbers.
    Writes customers.parquet, recommendations.parquet and manifest.json into a new version
    of the output folder (runs/<time>/ beside it) and then points the output (a symlink)
    at it in one step."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from features.cutoffs import parse_cutoff
    from serving.online import SnapshotError
    from training.tracking import registry_errors

    settings = ctx.obj
    out = out or settings.home / "scores" / "latest"
    t0 = time.perf_counter()
    with user_errors(), registry_errors(settings):
        cutoff = parse_cutoff(as_of, "--as-of") if as_of is not None else None
        keys = model_keys(models)
        if keys is not None and engine is Engine.spark:
            raise fail("--models works with --engine local; --engine spark scores all three")
        try:
            if engine is Engine.spark:
                from serving.spark_scoring import run_batch_spark

                result = run_batch_spark(
                    settings, out, cutoff, k, only_changed, master=spark_master, say=say
                )
            else:
                from serving.batch import run_batch

                with Progress(
                    "[progress.description]{task.description}",
                    BarColumn(),
                    MofNCompleteColumn(),
                    TimeElapsedColumn(),
                    console=console,
                    transient=True,
                ) as bar:
                    task = bar.add_task("scoring customers", total=None)
                    result = run_batch(
                        settings,
                        out,
                        cutoff,
                        k,
                        only_changed,
                        say=say,
                        progress=lambda done, total: bar.update(task, completed=done, total=total),
                        models=keys,
                    )
        except SnapshotError as exc:
            raise fail(str(exc)) from None
    seconds = time.perf_counter() - t0
    versions = ", ".join(f"{n} v{v}" for n, v in result.versions.items())
    console.print(
        f"[green]✓[/] scored {result.rescored:,} customers ({result.customers:,} in the output, "
        f"{result.cold_start:,} cold start) as of {result.as_of:%Y-%m-%d} in {seconds:.1f} s\n"
        f"  models: {versions}\n  output: {result.path}"
    )
