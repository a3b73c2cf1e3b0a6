"""Terminal output shared by every command: one console, clear errors, timed steps."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import typer
from rich.console import Console
from rich.markup import escape

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

EXIT_BAD_INPUT = 2


def fail(message: str, code: int = EXIT_BAD_INPUT) -> typer.Exit:
    """Print an error (no traceback) and return the Exit to raise.

    The message is plain text: brackets in it (``omni-personalize[spark]``) are printed,
    not read as rich markup, and lines are not wrapped at the terminal's width.
    """
    err_console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    return typer.Exit(code)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn expected errors (bad data, bad parameters, missing store) into clean exits."""
    from features.contract.validate import DataError
    from features.store.events import StoreBusyError, StoreMissingError

    try:
        yield
    except DataError as exc:
        raise fail(str(exc)) from None
    except (StoreMissingError, StoreBusyError, ValueError) as exc:
        raise fail(str(exc)) from None


@contextlib.contextmanager
def step(title: str) -> Iterator[None]:
    """Show a spinner while a step runs, then its duration."""
    t0 = time.perf_counter()
    with console.status(f"{title} ..."):
        yield
    console.print(f"[green]✓[/] {title} [dim]({time.perf_counter() - t0:.1f} s)[/]")


def say(message: str) -> None:
    """Progress line for long jobs."""
    console.print(f"  {message}")
