"""`omni train ...`: train the models on the events store, log to MLflow, gate and register."""

from __future__ import annotations

from typing import Annotated

import typer

from features.console import console, say, step, user_errors
from training.job_names import CUSTOMER_JOBS, RECS_HORIZON_DAYS

app = typer.Typer(
    help="Train models on the events store; each run is tracked in MLflow and registered "
    "as @champion only if it beats the current champion on the same holdout metric.",
    no_args_is_help=True,
)


def _config(lookback: int, horizon: int, cutoffs: int, seed: int | None, settings):
    from training.customer_models.job import JobConfig

    return JobConfig(
        lookback_days=lookback,
        horizon_days=horizon,
        n_train_cutoffs=cutoffs,
        seed=settings.seed if seed is None else seed,
    )


def train_and_report(settings, jobs: tuple[str, ...], config) -> list:
    """Train each job in turn on the store's data; print metrics and the gate's decision."""
    from training.runner import load_training_data, run_customer_job
    from training.tracking import check_reachable, quiet_mlflow

    check_reachable(settings.tracking_uri)  # before minutes of training, not after
    quiet_mlflow()
    with step("read the events store"):
        events, customers = load_training_data(settings)
    say(f"{len(events):,} events, {len(customers):,} customers; MLflow: {settings.tracking_uri}")
    outcomes = []
    for job in jobs:
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
    console.print(
        f"  [bold]{r.name}[/] test cutoff {r.split.test:%Y-%m-%d} (gate: {r.gate_metric})"
    )
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
            int, typer.Option(min=1, help="Rolling training cutoffs, 30 days apart.")
        ] = 4,
        seed: Annotated[
            int | None, typer.Option(help="Random seed (default: OMNI_SEED or 42).")
        ] = None,
    ) -> None:
        from training.tracking import registry_errors

        settings = ctx.obj
        with user_errors(), registry_errors(settings):
            jobs = CUSTOMER_JOBS if job == "all" else (job,)
            train_and_report(settings, jobs, _config(lookback, horizon, cutoffs, seed, settings))
            if job == "all":
                train_recs_and_report(settings, RECS_HORIZON_DAYS, seed)

    command.__doc__ = {
        "churn": "Churn risk: LightGBM vs recency / frequency baselines.",
        "channel": "Next best channel: multiclass LightGBM vs most-used / last-used baselines.",
        "all": "Every model (churn, channel, recs), one after the other.",
    }[job]
    return command


for _job in (*CUSTOMER_JOBS, "all"):
    app.command(_job)(_command(_job))


def train_recs_and_report(settings, horizon: int, seed: int | None) -> object:
    """Train the recommender on the store's data; print the comparison and the gate."""
    from dataclasses import replace

    from features.store.events import read_events, read_table
    from training.recs.job import GATE_METRIC, train_recommender
    from training.tracking import check_reachable, quiet_mlflow

    if seed is not None:
        settings = replace(settings, seed=seed)
    check_reachable(settings.tracking_uri)  # before minutes of training, not after
    quiet_mlflow()
    with step("read the events store"):
        events = read_events(settings.store_dir)
        dims = {t: read_table(settings.store_dir, t) for t in ("customers", "products", "stores")}
    with step("train recs"):
        result = train_recommender(settings, events, **dims, horizon_days=horizon, say=say)
    table = result.table
    console.print(
        f"  [bold]recommender[/] test window {result.split.test:%Y-%m-%d} + {horizon} days, "
        f"{result.evaluations['model'].n_customers:,} customers"
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
) -> None:
    """Product recommendations: ALS / buy-again / popularity candidates ranked by LightGBM,
    vs popularity, buy-again + popularity and ALS-alone baselines."""
    from training.tracking import registry_errors

    with user_errors(), registry_errors(ctx.obj):
        train_recs_and_report(ctx.obj, horizon, seed)
