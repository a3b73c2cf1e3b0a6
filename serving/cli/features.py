"""`omni features ...`: list the feature registry, build the feature table as of a date.

Heavy imports (pandas, pyarrow) happen inside commands so `omni --help` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from features.console import console, print_json, say, user_errors

app = typer.Typer(
    help="Customer features as of a cutoff: list them, build the table from the store.",
    no_args_is_help=True,
)

WindowsOption = Annotated[
    str,
    typer.Option(help="Window lengths in days, comma separated; the longest is the lookback."),
]


def _windows(text: str) -> tuple[int, ...]:
    from features.registry import check_windows

    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"--windows {text!r}: expected whole days like 7,30,90,365") from None
    return check_windows(values)


@app.command("list")
def list_features(
    table: Annotated[
        str, typer.Option(help="Which table: customer, item or customer_item.")
    ] = "customer",
    windows: WindowsOption = "7,30,90,365",
    markdown: Annotated[
        bool, typer.Option("--markdown", help="Every table as Markdown (docs/feature_list.md).")
    ] = False,
    json_: Annotated[
        bool, typer.Option("--json", help="The table's features as one JSON document.")
    ] = False,
) -> None:
    """Print every feature: name, dtype, what a customer with no events gets, description."""
    with user_errors():
        from rich.table import Table

        from features.registry import TABLES, features_markdown, format_missing

        if markdown and json_:
            raise ValueError("--markdown and --json: give one of them")
        if markdown:
            print(features_markdown(_windows(windows)), end="")
            return
        if table not in TABLES:
            raise ValueError(f"--table must be one of {', '.join(TABLES)}, got {table!r}")
        spec = TABLES[table](_windows(windows))
        if json_:
            print_json(
                {
                    "table": table,
                    "windows": list(_windows(windows)),
                    "features": [
                        {
                            "name": f.name,
                            "dtype": f.dtype,
                            "family": f.family,
                            "missing": None if f.missing != f.missing else f.missing,  # NaN -> null
                            "description": f.description,
                        }
                        for f in spec
                    ],
                }
            )
            return
        grid = Table(title=f"{table} features ({len(spec)})", title_justify="left")
        for col in ("name", "dtype", "missing", "description"):
            grid.add_column(col, no_wrap=col != "description")
        for i, f in enumerate(spec):
            if i and f.family != spec[i - 1].family:
                grid.add_section()
            grid.add_row(f.name, f.dtype, format_missing(f.missing), f.description)
        console.print(grid)


@app.command()
def build(
    ctx: typer.Context,
    as_of: Annotated[
        str, typer.Option("--as-of", help="Cutoff (exclusive), e.g. 2025-06-01 (UTC).")
    ],
    windows: WindowsOption = "7,30,90,365",
    out: Annotated[
        Path | None,
        typer.Option(help="Output Parquet file (default: the data home's features folder)."),
    ] = None,
    engine: Annotated[
        str,
        typer.Option(help="local (this process) or spark (pyspark, the `spark` extra)."),
    ] = "local",
    spark_master: Annotated[
        str | None,
        typer.Option(
            help="Spark master for --engine spark, e.g. spark://host:7077, yarn, local[4] "
            "(env OMNI_SPARK_MASTER; default: local[*], or spark-submit's master).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Build the customer feature table as of a date from the events store."""
    settings = ctx.obj
    if settings is None:
        from features.settings import get_settings

        settings = get_settings()
    with user_errors():
        from features.build import default_path
        from features.cutoffs import parse_cutoff

        if engine not in ("local", "spark"):
            raise ValueError(f"--engine must be local or spark, got {engine!r}")
        t = parse_cutoff(as_of, "--as-of")
        w = _windows(windows)
        path = out or default_path(settings.features_dir, t)
        if engine == "spark":
            result = _run_on_spark(settings, t, path, w, spark_master or settings.spark_master)
        else:
            result = _run_with_progress(settings.store_dir, t, path, w)
        _show_summary(result)


def _run_with_progress(store_dir: Path, as_of, path: Path, windows: tuple[int, ...]):
    """Run the build under a rich progress bar that advances with each feature family."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from features.build import build_from_store
    from features.customer_features import N_STEPS

    columns = (TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("read the events store", total=N_STEPS + 2)

        def advance(label: str) -> None:
            bar.update(task, advance=1, description=label)

        result = build_from_store(store_dir, as_of, path, windows, progress=advance)
        bar.update(task, completed=N_STEPS + 2)
    return result


def _run_on_spark(settings, as_of, path: Path, windows: tuple[int, ...], master: str | None):
    """The same build on Spark: a session for this command, stopped at the end."""
    import warnings

    from features.console import step
    from features.spark import build_from_store_spark, require_pyspark, spark_session
    from features.store.events import events_dataset

    require_pyspark()
    events_dataset(settings.store_dir)  # no store: say so before starting a JVM
    # pyspark warns on every import that it is not yet tested with pandas 3; our parity
    # tests cover what we use.
    warnings.filterwarnings("ignore", "PySpark does not yet fully support pandas")
    with step("start Spark"):
        spark = spark_session(master, app_name="omni features build")
    say(f"Spark master {spark.sparkContext.master}, {spark.sparkContext.defaultParallelism} cores")
    try:
        with step("build the customer features on Spark"):
            return build_from_store_spark(spark, settings.store_dir, as_of, path, windows)
    finally:
        spark.stop()


def _show_summary(result) -> None:
    import pandas as pd

    t = result.table
    active = int((t[f"orders_{result.windows[-1]}d"] > 0).sum()) if len(t) else 0
    recent = t["days_since_last_purchase"] if len(t) else pd.Series(dtype=float)
    console.print(
        f"[green]✓[/] {result.n_customers:,} customers x {result.n_features} features as of "
        f"{result.as_of:%Y-%m-%d %H:%M} UTC from {result.n_events:,} events "
        f"[dim](read {result.seconds['read']:.1f} s, build {result.seconds['build']:.1f} s, "
        f"write {result.seconds['write']:.1f} s)[/]"
    )
    lookback = result.windows[-1]
    if active:
        median = recent[recent < lookback].median()
        say(
            f"{active:,} customers ordered in the last {lookback} days; median days since "
            f"their last purchase: {median:.1f}"
        )
    if result.n_events == 0:
        say("[yellow]no events in the lookback before the cutoff: all features are missing values")
    say(f"written to {result.path} (cutoff, windows and feature list in its Parquet metadata)")
