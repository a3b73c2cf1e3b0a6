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
