"""`omni events ...`: live events: replay a file against a running service, compact the
journal into the events store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from features.console import console, fail, say, step, user_errors

app = typer.Typer(help="Live events: send a file to the service, compact the journal.")


@app.command()
def compact(ctx: typer.Context) -> None:
    """Move journaled live events into the events store.

    `omni train` and `omni snapshot build` do it first too. While a service runs, the
    journal segments it has closed (one a minute)."""
    from serving.live.compact import compact as run

    with user_errors(), step("compact the event journal"):
        result = run(ctx.obj, progress=say)
    console.print(result.line())


@app.command()
def send(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="Contract events file (.csv or .parquet).")],
    url: Annotated[str, typer.Option(help="The service.")] = "http://127.0.0.1:3000",
    rate: Annotated[
        float | None, typer.Option(min=1, help="At most this many events a second.")
    ] = None,
    batch: Annotated[int, typer.Option(min=1, max=1000, help="Events per request.")] = 500,
) -> None:
    """Replay a contract events file against a running service's POST /events.

    Event ids are derived as a file load derives them (a re-run adds nothing); batches
    are retried on 503 and connection errors. Exit 1 if a batch was refused."""
    import requests
    from rich.progress import Progress

    from serving.live.send import file_events, send_events

    if not file.exists():
        raise fail(f"{file}: no such file")
    with user_errors():
        events = file_events(file)
        with Progress(console=console, transient=True) as bar:
            task = bar.add_task("sending", total=len(events))
            try:
                result = send_events(
                    events, url, batch, rate, ctx.obj.api_token,
                    progress=lambda done: bar.update(task, completed=done),
                )  # fmt: skip
            except requests.ConnectionError:
                raise fail(f"no service answers at {url} (start one with `omni serve`)") from None
    for problem in result.problems:
        console.print(f"refused: {problem}", soft_wrap=True)
    console.print(result.line())
    if result.rejected:
        raise typer.Exit(1)


@app.command()
def show(
    ctx: typer.Context,
    customer_id: Annotated[str, typer.Argument(help="The customer.")],
) -> None:
    """Print a customer's live state as the refresher wrote it to Redis.

    Needs OMNI_ONLINE_STORE: its feature row, churn probability and next-channel
    probabilities, fresh from the last refresh that touched them."""
    import json

    from serving.live.redis_journal import RedisJournal
    from serving.live.redis_state import RedisState

    settings = ctx.obj
    if not settings.online_store:
        raise fail("the live state is in Redis only with OMNI_ONLINE_STORE set")
    try:
        journal = RedisJournal(settings.online_store, settings.online_namespace)
        try:
            kept = RedisState(journal).customer(customer_id)
        finally:
            journal.close()
    except OSError as exc:  # Redis not answering: one line
        raise fail(str(exc)) from None
    if kept is None:
        raise fail(f"{customer_id}: no live state in Redis (no live event changed it)")
    for name in ("features", "channels"):
        kept[name] = json.loads(kept[name])
    kept["churn"] = json.loads(kept["churn"])
    console.print_json(json.dumps(kept))
