"""`omni journeys deliver`: the outbox POSTed to each channel's webhook."""

from __future__ import annotations

from typing import Annotated

import typer

from features.console import console, fail, user_errors


def deliver(
    ctx: typer.Context,
    retries: Annotated[
        int, typer.Option(min=0, max=20, help="Retries of a batch on errors and 5xx answers.")
    ] = 3,
) -> None:
    """POST the messages of the outbox to each channel's webhook (policy.yaml's webhooks).

    Files are sent oldest first, in batches, with retries; what was delivered is recorded
    beside each file, so running it again sends only what is left. Channels without a
    webhook are left in journeys/outbox/<channel>/ for their system to pick up."""
    from serving.journeys.outbox import OutboxError
    from serving.journeys.outbox import deliver as deliver_outbox
    from serving.journeys.spec import load_policy

    settings = ctx.obj
    with user_errors():
        policy = load_policy(settings.journeys_dir)
        if not policy.webhooks:
            raise fail(
                f"no webhooks in {settings.journeys_dir / 'policy.yaml'}: add e.g. "
                "`webhooks: {email: https://sender.example/messages}`, or let the sending "
                "systems pick up journeys/outbox/<channel>/"
            )
        try:
            done = deliver_outbox(settings.journeys_dir, policy.webhooks, retries)
        except OutboxError as exc:
            raise fail(str(exc), code=1) from None
    for channel, (files, messages) in done.items():
        console.print(f"[green]✓[/] {channel}: {messages:,} messages from {files} files")
