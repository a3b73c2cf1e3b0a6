"""`omni journeys`: the journey declarations of ``<home>/journeys`` (docs/journeys.md):
copy the shipped examples there, list them, check a file before dropping it in."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from features.console import console, fail, print_json

if TYPE_CHECKING:
    from serving.journeys.spec import Journey

app = typer.Typer(
    help="Behaviour-triggered journeys: declarations, contact policy, decisions.",
    no_args_is_help=True,
)


def examples_dir() -> Path:
    """The shipped example journeys and policy (``serving/journeys/examples``)."""
    return Path(__file__).resolve().parent.parent / "journeys" / "examples"


@app.command()
def init(ctx: typer.Context) -> None:
    """Copy the example journeys and contact policy into the home's journeys folder.

    Only when it holds no journeys yet: nothing is ever overwritten."""
    import shutil

    from serving.journeys.spec import journey_files, yaml_files

    folder = ctx.obj.journeys_dir
    present = journey_files(folder)
    if present:
        raise fail(
            f"{folder} already holds journeys ({', '.join(f.name for f in present)}): "
            "nothing copied, nothing overwritten (remove them first to start from the examples)"
        )
    folder.mkdir(parents=True, exist_ok=True)
    copied = []
    for source in yaml_files(examples_dir()):
        target = folder / source.name
        if target.exists():  # only policy.yaml can be there: keep the user's
            console.print(f"  kept the existing {target}")
            continue
        shutil.copyfile(source, target)
        copied.append(source.name)
    console.print(f"copied {len(copied)} files into {folder}: {', '.join(copied)}")
    console.print("  see them with `omni journeys list`; edit, then `omni journeys check FILE`")


def _channels(journey: Journey) -> str:
    allowed = ", ".join(journey.channel.allowed)
    return f"{allowed} (fixed)" if journey.channel.choose == "fixed" else f"best of {allowed}"


def _hours(h: float) -> str:
    return f"{h:g} h"


@app.command("list")
def list_journeys(
    ctx: typer.Context,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the journeys as one JSON document.")
    ] = False,
) -> None:
    """The journeys of the home's journeys folder, one line each.

    A bad file: every problem, named by file, journey and field, and exit code 2."""
    from rich.table import Table

    from serving.journeys.spec import JourneyError, load_journeys

    folder = ctx.obj.journeys_dir
    try:
        journeys = load_journeys(folder)
    except JourneyError as exc:
        raise fail(str(exc)) from None
    if as_json:
        print_json([j.model_dump(mode="json") for j in journeys])
        return
    if not journeys:
        console.print(f"no journeys in {folder}: `omni journeys init` copies the examples there")
        return
    table = Table(title=f"journeys in {folder}")
    for column in ("name", "trigger", "channels", "content", "delay", "priority", "holdout"):
        table.add_column(column)
    table.add_column("enabled")
    for j in journeys:
        table.add_row(
            j.name,
            j.trigger.kind,
            _channels(j),
            f"{j.content.source} x{j.content.k}",
            _hours(j.delay_hours),
            str(j.priority),
            f"{j.holdout:.0%}",
            "yes" if j.enabled else "no",
        )
    console.print(table)


@app.command()
def check(
    file: Annotated[Path, typer.Argument(help="A journey file (YAML), or a policy.yaml.")],
) -> None:
    """Validate one journey (or policy) file before putting it in the journeys folder.

    Checks its fields and the features its audience names (against the feature
    registry); exit code 2 on problems."""
    from features.registry import feature_names
    from serving.journeys.spec import (
        POLICY_FILE,
        JourneyError,
        check_features,
        load_policy,
        read_journey_file,
    )

    if not file.is_file():
        raise fail(f"{file}: no such file")
    try:
        if file.name == POLICY_FILE:
            load_policy(file.parent)
            console.print(f"ok: {file} is a valid contact policy")
            return
        journeys = read_journey_file(file)
    except JourneyError as exc:
        raise fail(str(exc)) from None
    try:
        check_features(journeys, feature_names())
    except JourneyError as exc:  # its lines name journey and field: add the file
        raise fail("\n".join(f"{file}, {line}" for line in str(exc).splitlines())) from None
    console.print(f"ok: {len(journeys)} journey{'s' if len(journeys) != 1 else ''}")


def _register() -> None:
    """The commands that live in modules of their own (each one job)."""
    from serving.cli.journeys_deliver import deliver
    from serving.cli.journeys_report import report
    from serving.cli.journeys_run import run
    from serving.cli.journeys_uplift import train_uplift

    app.command()(run)
    app.command()(deliver)
    app.command()(report)
    app.command("train-uplift")(train_uplift)


_register()
