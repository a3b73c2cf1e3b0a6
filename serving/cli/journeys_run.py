"""`omni journeys run`: one batch evaluation of every enabled journey as of a moment."""

from __future__ import annotations

import sys
import time
from typing import Annotated

import typer

from features.console import console, fail, print_json, say, user_errors


def run(
    ctx: typer.Context,
    as_of: Annotated[
        str | None,
        typer.Option(help="Evaluate as of this moment (UTC; default: after the newest event)."),
    ] = None,
    yes: Annotated[
        bool,
        typer.Option(
            "--yes", help="Go on when a journey would contact more than the policy's share."
        ),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Decide and print, but write nothing.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the decisions per journey as JSON.")
    ] = False,
) -> None:
    """Decide every enabled journey as of a moment; write the decisions and the outbox.

    Triggers over the events store, audience, channel (next best among the journey's, consented) and
    products (recommender or the trigger's), then the contact policy. Writes the decisions
    (journeys/decisions/) and the messages per channel (journeys/outbox/<channel>/).
    Decides nothing twice when run again for the same moment."""
    from features.cutoffs import parse_cutoff
    from serving.journeys.evaluate import evaluate
    from serving.journeys.spec import check_features, load_journeys, load_policy
    from serving.live.compact import compact_first
    from serving.online import SnapshotError, after_last_event
    from training.tracking import registry_errors

    settings = ctx.obj
    tell = (lambda _m: None) if as_json else say
    t0 = time.perf_counter()
    with user_errors(), registry_errors(settings):
        from features.registry import feature_names

        journeys = load_journeys(settings.journeys_dir)
        if not [j for j in journeys if j.enabled]:
            raise fail(
                f"no enabled journeys in {settings.journeys_dir} "
                "(`omni journeys init` copies the examples there)"
            )
        check_features(journeys, feature_names())
        policy = load_policy(settings.journeys_dir)
        compact_first(settings, tell)
        moment = parse_cutoff(as_of, "--as-of") if as_of else after_last_event(settings)

        def ask(question: str) -> bool:
            if yes:
                return True
            if not sys.stdin.isatty():
                return False
            return typer.confirm(f"{question}. Go on?", default=False)

        try:
            result = evaluate(
                settings, journeys, policy, moment, confirm=ask, write=not dry_run, say=tell
            )
        except SnapshotError as exc:
            raise fail(str(exc)) from None
    summary = result.summary()
    if as_json:
        print_json(
            {
                "run_id": result.run_id,
                "as_of": result.as_of.isoformat(),
                "customers": result.customers,
                "written": {k: str(v) for k, v in result.written.items()},
                "decisions": summary.to_dict(orient="records"),
            }
        )
        return
    from rich.table import Table

    table = Table("journey", "status", "reason", "customers")
    for row in summary.itertuples(index=False):
        table.add_row(row.journey, row.status, row.reason, f"{row.customers:,}")
    console.print(table)
    sent = int((result.decisions["status"] != "not_sent").sum())
    where = "nothing written (--dry-run)" if dry_run else f"run {result.run_id}"
    console.print(
        f"[green]✓[/] {len(result.decisions):,} decisions, {sent:,} messages as of "
        f"{result.as_of:%Y-%m-%d %H:%M} in {time.perf_counter() - t0:.1f} s: {where}"
    )
