"""Terminal output shared by every command: one console, clear errors, timed steps."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Iterator
from typing import Any

import typer
from rich.console import Console, ConsoleDimensions
from rich.markup import escape

EXIT_BAD_INPUT = 2
PIPED_WIDTH = 10_000
"""Width of output that is not a terminal: wide enough that no table cell is cut."""


class FullWidthWhenPiped(Console):
    """A rich console that, writing to a pipe or file, prints tables and lines in full
    (no `next_best_cha…`, no wrapping at 80 columns, whatever COLUMNS says); on a
    terminal or in Jupyter it fits the screen as usual."""

    @property
    def size(self) -> ConsoleDimensions:
        size = Console.size.fget(self)  # type: ignore[attr-defined]
        if self.is_terminal or self.is_jupyter:
            return size
        return ConsoleDimensions(PIPED_WIDTH, size.height)

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        Console.size.fset(self, new_size)  # type: ignore[attr-defined]


console = FullWidthWhenPiped(highlight=False)
err_console = FullWidthWhenPiped(stderr=True, highlight=False)


def print_json(document: Any) -> None:
    """Print one JSON document on stdout and nothing else (`--json`, for scripts)."""
    sys.stdout.write(json.dumps(document, indent=2, ensure_ascii=False, allow_nan=False) + "\n")


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


def warn(message: str) -> None:
    """One warning line on stderr, never wrapped."""
    err_console.print(f"[bold yellow]warning:[/] {escape(message)}", soft_wrap=True)


def say(message: str) -> None:
    """Progress line for long jobs."""
    console.print(f"  {message}")
