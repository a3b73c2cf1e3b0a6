"""`omni train ...`: train the models on the events store, log to MLflow, gate and register."""

from __future__ import annotations

from typing import Annotated

import typer

from features.console import console, say, step, user_errors, warn
from training.job_names import CUSTOMER_JOBS, RECS_HORIZON_DAYS

app = typer.Typer(
    help="Train models on the events store; each run is tracked in MLflow and registered "
    "as @champion only if it beats the current champion on the same holdout metric.",
    no_args_is_help=True,
)


TestCutoff = Annotated[
    str | None,
    typer.Option(
        "--test-cutoff",
        help="First day of the test window (YYYY-MM-DD); validation and training cutoffs are "
        "placed before it. Default: --as-of minus the horizon. Give the same date to "
        "reproduce a split after more data arrived.",
    ),
]
AsOf = Annotated[
    str | None,
    typer.Option(
        "--as-of",
        help="Train as if today were this day (YYYY-MM-DD): events from it on are not read, "
        "and the recommender is moved to it. Default: the day after the last event.",
    ),
]


def _dates(test_cutoff: str | None, as_of: str | None) -> tuple:
    """The two optional cutoffs of the command line as UTC timestamps (None: default)."""
    from features.cutoffs import parse_cutoff

    return (
        None if test_cutoff is None else parse_cutoff(test_cutoff, "--test-cutoff"),
        None if as_of is None else parse_cutoff(as_of, "--as-of"),
    )


def _config(lookback: int, horizon: int, cutoffs: int, seed: int | None, settings, dates):
    from training.customer_models.job import JobConfig

    return JobConfig(
        lookback_days=lookback,
        horizon_days=horizon,
        n_train_cutoffs=cutoffs,
        seed=settings.seed if seed is None else seed,
        test_cutoff=dates[0],
        as_of=dates[1],
    )


def one_channel(events) -> str | None:
    """The only channel of the events, or None when there are two or more."""
    channels = events["channel"].dropna().unique()
    return str(channels[0]) if len(channels) == 1 else None


def train_and_report(settings, jobs: tuple[str, ...], config, skip_one_channel=False) -> list:
    """Train each job in turn on the store's data; print metrics and the gate's decision.
    ``skip_one_channel``: pass over next best channel, with a note, when the events have
    one channel (``omni train all``); asked for alone, it is an error."""
    from serving.live.compact import compact_first
    from training.runner import load_training_data, run_customer_job
    from training.tracking import check_reachable, quiet_mlflow

    check_reachable(settings.tracking_uri)  # before minutes of training, not after
    quiet_mlflow()
    compact_first(settings, say)  # live events reach training
    with step("read the events store"):
        events, customers = load_training_data(settings)
    say(f"{len(events):,} events, {len(customers):,} customers; MLflow: {settings.tracking_uri}")
    outcomes = []
    for job in jobs:
        only = one_channel(events) if job == "channel" and skip_one_channel else None
        if only is not None:
            warn(f"skipped next best channel: every event is on one channel ({only!r})")
            continue
        with step(f"train {job}"):
            outcome = run_customer_job(settings, job, events, customers, config, say=say)
        _report(outcome)
        outcomes.append(outcome)
    return outcomes


def _report(outcome) -> None:
    """Every test metric of the model and of each baseline, one line each, then the gate."""
    import pandas as pd

    from training.customer_models.evaluation import comparison_table

    r, d = outcome.result, outcome.decision
    table = comparison_table(r.metrics)
    console.print(f"  [bold]{r.name}[/] (gate: {r.gate_metric}) {r.split.describe()}")
    if r.split.note:
        console.print(f"  [yellow]cutoffs chosen from the history[/]: {r.split.note}")
    for name, row in table.iterrows():
        values = "  ".join(f"{k} {'-' if pd.isna(v) else f'{v:.3f}'}" for k, v in row.items())
        label = name if name == "model" else f"baseline {name}"
        console.print(f"    {label:<20} {values}")
    colour = "green" if d.alias == "champion" else "yellow"
    console.print(f"  [{colour}]{r.name} v{d.version} -> @{d.alias}[/]: {d.reason}")


def _command(job: str):
    def command(
        ctx: typer.Context,
        lookback: Annotated[
            int,
            typer.Option(
                min=1,
                help="Days a customer must have bought in before the cutoff (churn population).",
            ),
        ] = 90,
        horizon: Annotated[
            int, typer.Option(min=1, help="Label window after each cutoff, in days.")
        ] = 60,
        cutoffs: Annotated[
            int,
            typer.Option(
                min=1,
                help="Rolling training cutoffs, 30 days apart (closer, then fewer, when the "
                "history is short; the output says so).",
            ),
        ] = 4,
        seed: Annotated[
            int | None, typer.Option(help="Random seed (default: OMNI_SEED or 42).")
        ] = None,
        test_cutoff: TestCutoff = None,
        as_of: AsOf = None,
    ) -> None:
        from serving.collector import free_between_steps
        from training.tracking import registry_errors

        settings = ctx.obj
        with user_errors(), registry_errors(settings):
            dates = _dates(test_cutoff, as_of)
            jobs = CUSTOMER_JOBS if job == "all" else (job,)
            config = _config(lookback, horizon, cutoffs, seed, settings, dates)
            train_and_report(settings, jobs, config, skip_one_channel=job == "all")
            if job == "all":
                free_between_steps()
                train_recs_and_report(settings, RECS_HORIZON_DAYS, seed, *dates)

    command.__doc__ = {
        "churn": "Churn risk: LightGBM vs recency, frequency and BG/NBD baselines.",
        "channel": "Next best channel: multiclass LightGBM vs most-used / last-used baselines.",
        "all": "Every model (churn, channel, recs), one after the other.",
    }[job]
    return command


for _job in (*CUSTOMER_JOBS, "all"):
    app.command(_job)(_command(_job))


def train_recs_and_report(
    settings, horizon: int, seed: int | None, test_cutoff=None, as_of=None
) -> object:
    """Train the recommender on the store's data; print the comparison and the gate."""
    from dataclasses import replace

    from features.store.events import read_events, read_table
    from serving.live.compact import compact_first
    from training.recs.job import GATE_METRIC, train_recommender
    from training.tracking import check_reachable, quiet_mlflow

    if seed is not None:
        settings = replace(settings, seed=seed)
    check_reachable(settings.tracking_uri)  # before minutes of training, not after
    quiet_mlflow()
    compact_first(settings, say)  # live events reach training
    with step("read the events store"):
        events = read_events(settings.store_dir)
        dims = {t: read_table(settings.store_dir, t) for t in ("customers", "products", "stores")}
    with step("train recs"):
        result = train_recommender(
            settings,
            events,
            **dims,
            horizon_days=horizon,
            test_cutoff=test_cutoff,
            as_of=as_of,
            say=say,
        )
    table = result.table
    console.print(f"  [bold]recommender[/] {result.split.describe()}")
    console.print(
        f"    {result.evaluations['model'].n_customers:,} customers in the test window; "
        f"the registered model is moved to {result.split.as_of:%Y-%m-%d}"
    )
    for name, row in table.iterrows():
        console.print(
            f"    {name:<22} ndcg@10 {row['ndcg@10']:.4f}  map@10 {row['map@10']:.4f}  "
            f"recall@10 {row['recall@10']:.4f}  new ndcg@10 {row['new_ndcg@10']:.4f}"
        )
    d = result.decision
    colour = "green" if d.alias == "champion" else "yellow"
    console.print(
        f"  [{colour}]recommender v{d.version} -> @{d.alias}[/] ({GATE_METRIC}): {d.reason}"
    )
    return result


@app.command("recs")
def recs_command(
    ctx: typer.Context,
    horizon: Annotated[
        int, typer.Option(min=1, help="Evaluation / label window after each cutoff, in days.")
    ] = RECS_HORIZON_DAYS,
    seed: Annotated[
        int | None, typer.Option(help="Random seed (default: OMNI_SEED or 42).")
    ] = None,
    test_cutoff: TestCutoff = None,
    as_of: AsOf = None,
) -> None:
    """Product recommendations: ALS / buy-again / popularity candidates ranked by LightGBM,
    vs popularity, buy-again + popularity and ALS-alone baselines."""
    from training.tracking import registry_errors

    with user_errors(), registry_errors(ctx.obj):
        train_recs_and_report(ctx.obj, horizon, seed, *_dates(test_cutoff, as_of))
