"""`omni journeys report`: what each journey added, contacted vs journey holdout, from the
decision log and the events store's purchases (serving/journeys/report.py). Registered in
the `omni journeys` group by serving/cli/main.py."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from features.console import console, fail, print_json, say, user_errors

GROUPS = ("journey", "channel")


def report(
    ctx: typer.Context,
    since: Annotated[
        str | None,
        typer.Option(help="Decisions from this time on, e.g. 2026-12-01 (UTC; default: all)."),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(help="... and before this time (default: now).", show_default=False),
    ] = None,
    window_days: Annotated[
        float | None,
        typer.Option(
            help="A purchase this many days after a decision counts (default: the policy's "
            "attribution_days).",
            show_default=False,
        ),
    ] = None,
    by: Annotated[str, typer.Option(help="Split by journey and/or channel.")] = "journey,channel",
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the report as one JSON document.")
    ] = False,
    plot: Annotated[
        Path | None, typer.Option(help="Save the cumulative uplift plot (PNG) here.")
    ] = None,
    mlflow: Annotated[
        bool, typer.Option("--mlflow", help="Log the report and plot as an MLflow run.")
    ] = False,
) -> None:
    """Per journey and channel: customers contacted vs held out, conversion (a purchase
    within the attribution window after the decision), revenue per customer, the uplift with
    a 95 % interval, incremental purchases and revenue. Live events are compacted first."""
    import tempfile

    import pandas as pd

    from features.cutoffs import parse_cutoff
    from serving.journeys.decisions import read_decisions
    from serving.journeys.report import cumulative_uplift, journey_report, plot_cumulative
    from serving.journeys.spec import JourneyError, load_policy
    from serving.live.compact import compact_first

    settings = ctx.obj
    tell = (lambda _m: None) if as_json else say
    with user_errors():
        start = parse_cutoff(since, "--since") if since is not None else None
        end = parse_cutoff(until, "--until") if until is not None else None
        if start is not None and end is not None and end <= start:
            raise ValueError(f"--until ({end:%Y-%m-%d %H:%M}) must be after --since")
        groups = [g.strip() for g in by.split(",") if g.strip()]
        bad = [g for g in groups if g not in GROUPS]
        if bad or not groups:
            raise ValueError(f"--by takes {' and/or '.join(GROUPS)}, got {by!r}")
        if window_days is None:
            try:
                window_days = load_policy(settings.journeys_dir).attribution_days
            except JourneyError as exc:
                raise ValueError(str(exc)) from None
        if window_days <= 0:
            raise ValueError(f"--window-days must be positive, got {window_days:g}")
        window = pd.Timedelta(days=window_days)
        decisions = read_decisions(settings.journeys_dir, start, end)
        if decisions.empty:
            raise fail(
                f"no journey decisions{'' if start is None else f' since {start:%Y-%m-%d %H:%M}'}"
                f" in {settings.journeys_dir / 'decisions'} (`omni journeys run` writes them)",
                code=1,
            )
        compact_first(settings, tell)
        purchases = _purchases(settings, decisions["decided_at"].min())
        table = journey_report(decisions, purchases, window, by=groups)
        run_id = None
        with tempfile.TemporaryDirectory() as tmp:
            plot_path = plot if plot is not None else Path(tmp) / "journeys_cumulative_uplift.png"
            if plot is not None or mlflow:
                plot_cumulative(cumulative_uplift(decisions, purchases, window), plot_path)
            if mlflow:
                from serving.journeys.report import log_report_to_mlflow

                run_id = log_report_to_mlflow(
                    settings, table, plot_path, params={"window_days": window_days, "by": by}
                )
    if as_json:
        print_json(
            {
                "since": None if start is None else start.isoformat(),
                "until": None if end is None else end.isoformat(),
                "window_days": window_days,
                "decisions": len(decisions),
                "mlflow_run_id": run_id,
                "rows": table.astype(object).where(table.notna(), None).to_dict("records"),
            }
        )
        return
    console.print(
        f"{len(decisions):,} decisions; a purchase within {window_days:g} days of a decision "
        "converts it"
    )
    _print_table(table, groups)
    if plot is not None:
        say(f"cumulative uplift plot: {plot}")
    if run_id is not None:
        say(f"logged to MLflow run {run_id}")


def _purchases(settings, start):
    """The store's purchases (customer_id, ts, amount) from ``start`` on; none when the
    home has no events store yet."""
    from features.contract.schema import EVENTS, empty_frame
    from features.store.events import StoreMissingError, read_events

    columns = ["customer_id", "ts", "amount"]
    try:
        return read_events(settings.store_dir, start, columns=columns, event_types=["purchase"])
    except StoreMissingError:
        return empty_frame(EVENTS)[columns]


def _print_table(table, groups) -> None:
    from rich.table import Table

    out = Table(show_edge=False, header_style="bold")
    shown = {
        "contacted": "contacted",
        "holdout": "holdout",
        "conversion_contacted": "conv. contacted",
        "conversion_holdout": "conv. holdout",
        "uplift": "uplift",
        "ci": "95% CI",
        "incremental_purchases": "incr. purchases",
        "incremental_revenue": "incr. revenue",
    }
    for name in groups:
        out.add_column(name)
    for label in shown.values():
        out.add_column(label, justify="right")

    def pct(v: float) -> str:
        return "-" if v != v else f"{v:+.1%}" if v < 0 else f"{v:.1%}"

    def num(v: float) -> str:
        return "-" if v != v else f"{v:,.1f}"

    for row in table.to_dict("records"):
        out.add_row(
            *(str(row[g]) for g in groups),
            f"{row['contacted']:,}",
            f"{row['holdout']:,}",
            pct(row["conversion_contacted"]),
            pct(row["conversion_holdout"]),
            pct(row["uplift"]),
            "-"
            if row["ci_low"] != row["ci_low"]
            else f"{pct(row['ci_low'])} .. {pct(row['ci_high'])}",
            num(row["incremental_purchases"]),
            num(row["incremental_revenue"]),
        )
    console.print(out)
