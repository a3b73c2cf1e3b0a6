"""`omni report recs`: click-through and conversion of what /recommend served, from the
recommendation log and the events that carry its recommendation_id."""

from __future__ import annotations

from typing import Annotated

import typer

from features.console import console, fail, print_json, say, user_errors

app = typer.Typer(help="Reports on what the service served.", no_args_is_help=True)


@app.command()
def recs(
    ctx: typer.Context,
    since: Annotated[
        str, typer.Option(help="Answers served from this time on, e.g. 2026-12-01 (UTC).")
    ],
    until: Annotated[
        str | None,
        typer.Option(help="... and before this time (default: now).", show_default=False),
    ] = None,
    window_days: Annotated[
        float, typer.Option(min=0, help="Events up to this many days after an answer count.")
    ] = 7.0,
    by: Annotated[
        str, typer.Option(help="Split by any of reason, channel, customer (comma-separated).")
    ] = "reason,channel,customer",
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the report as one JSON document.")
    ] = False,
) -> None:
    """Impressions (products shown by /recommend), click-through (a click or view of the
    product carrying the answer's recommendation_id), carts, conversion (a purchase of it)
    and revenue, per reason, channel and warm / cold customer. Live events are compacted
    into the store first, so the report sees them."""
    import pandas as pd

    from features.cutoffs import parse_cutoff
    from serving.live.compact import compact_first
    from serving.rec_attribution import CLOCK_SKEW, attributed, recs_report
    from serving.recommendation_log import read_log

    settings = ctx.obj
    tell = (lambda _m: None) if as_json else say
    with user_errors():
        start = parse_cutoff(since, "--since")
        end = parse_cutoff(until, "--until") if until is not None else None
        if end is not None and end <= start:
            raise ValueError(f"--until ({end:%Y-%m-%d %H:%M}) must be after --since")
        groups = [g.strip() for g in by.split(",") if g.strip()]
        compact_first(settings, tell)
        shown = read_log(settings.recommendations_dir, start.to_pydatetime()).to_pandas()
        if end is not None:
            shown = shown[shown["served_at"] < end].reset_index(drop=True)
        window = pd.Timedelta(days=window_days)
        events = _tagged_events(settings, start - CLOCK_SKEW)  # the earliest that count
        rows, unmatched = attributed(shown, events, window)
        table = recs_report(rows, groups)
    if as_json:
        print_json(
            {
                "since": start.isoformat(),
                "until": None if end is None else end.isoformat(),
                "answers": int(shown["recommendation_id"].nunique()),
                "unmatched_events": unmatched,
                "rows": table.astype(object).where(table.notna(), None).to_dict("records"),
            }
        )
        return
    if shown.empty:
        raise fail(
            f"no recommendations logged since {start:%Y-%m-%d %H:%M} in "
            f"{settings.recommendations_dir} (the service writes them there)",
            code=1,
        )
    answers = shown["recommendation_id"].nunique()
    console.print(
        f"{answers:,} answers, {len(shown):,} products shown since {start:%Y-%m-%d %H:%M}; "
        f"events within {window_days:g} days of an answer count"
    )
    _print_table(table)
    if unmatched:
        say(
            f"{unmatched:,} events carry a recommendation_id that matches no product shown "
            "in the period (another period, a pruned log, or another product)"
        )


def _tagged_events(settings, start):
    """The store's events from ``start`` on that carry a recommendation_id (none when the
    home has no events store yet)."""
    import pyarrow.dataset as ds

    from features.contract.schema import EVENTS, empty_frame
    from features.store.events import StoreMissingError, events_dataset

    columns = ["recommendation_id", "product_id", "ts", "event_type", "amount"]
    try:
        dataset = events_dataset(settings.store_dir)
    except StoreMissingError:
        return empty_frame(EVENTS)[columns]
    flt = ds.field("recommendation_id").is_valid() & (ds.field("ts") >= start.to_pydatetime())
    return dataset.to_table(columns=columns, filter=flt).to_pandas()


def _print_table(table) -> None:
    from rich.table import Table

    from serving.rec_attribution import GROUPS

    out = Table(show_edge=False, header_style="bold")
    numbers = {"impressions", "clicks", "carts", "purchases"}
    for name in table.columns:
        out.add_column(name, justify="left" if name in GROUPS else "right")
    for row in table.itertuples(index=False):
        cells = []
        for name, value in zip(table.columns, row, strict=True):
            if name in numbers:
                cells.append(f"{int(value):,}")
            elif name in ("ctr", "conversion"):
                cells.append("-" if value != value else f"{value:.2%}")
            elif name == "revenue":
                cells.append(f"{value:,.2f}")
            else:
                cells.append(str(value))
        out.add_row(*cells)
    console.print(out)
