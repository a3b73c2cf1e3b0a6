"""`omni journeys train-uplift`: a journey's uplift model from its decision log."""

from __future__ import annotations

from typing import Annotated

import typer

from features.console import console, print_json, say, user_errors


def train_uplift(
    ctx: typer.Context,
    journey: Annotated[str, typer.Argument(help="The journey's name (see `omni journeys list`).")],
    window_days: Annotated[
        float | None,
        typer.Option(
            min=0.01,
            help="A purchase within this many days counts (default: the policy's "
            "attribution_days).",
            show_default=False,
        ),
    ] = None,
    test_share: Annotated[
        float,
        typer.Option(
            min=0.05, max=0.8, help="Share of the latest decision moments kept to measure it."
        ),
    ] = 0.25,
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON.")] = False,
) -> None:
    """Train a journey's uplift model from its contacted and holdout decisions.

    Two LightGBM models (contacted and held-out
    customers) on its earlier decisions, measure it on the later ones (Qini, uplift among
    the top k% against contacting everyone), log it to MLflow and save it under
    <home>/journeys/uplift/. `omni journeys run` then predicts each proposal's uplift, and
    a journey's min_uplift keeps only those above it."""
    import pandas as pd

    from serving.journeys.spec import load_policy
    from training.tracking import registry_errors
    from training.uplift.job import train_journey_uplift

    settings = ctx.obj
    with user_errors(), registry_errors(settings):
        policy = load_policy(settings.journeys_dir)
        window = pd.Timedelta(days=window_days or policy.attribution_days)
        result = train_journey_uplift(
            settings, journey, window, test_share, say=(lambda _m: None) if as_json else say
        )
    if as_json:
        print_json(
            {
                "journey": journey,
                "split": result.split.isoformat(),
                "train_rows": result.train_rows,
                "test_rows": result.test_rows,
                "metrics": {k: (None if v != v else v) for k, v in result.metrics.items()},
                "model": str(result.path),
                "mlflow_run_id": result.run_id,
            }
        )
        return
    m = result.metrics
    console.print(
        f"[green]✓[/] uplift model of {journey}: {result.train_rows:,} decisions to train, "
        f"{result.test_rows:,} from {result.split:%Y-%m-%d} to measure\n"
        f"  Qini {m['qini']:.4f} (random targeting {m['qini_random']:.4f})\n"
        f"  uplift among the top 10% / 30% / 50%: {m['uplift_top_10pct']:+.2%} / "
        f"{m['uplift_top_30pct']:+.2%} / {m['uplift_top_50pct']:+.2%}; "
        f"contacting everyone: {m['uplift_everyone']:+.2%}\n"
        f"  model: {result.path} (MLflow run {result.run_id})"
    )
