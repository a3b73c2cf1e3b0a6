"""The main job: everything on the embedded default, printing where each result lives."""

from __future__ import annotations

from features.console import console, say, user_errors
from features.settings import Settings


def run_main_job(settings: Settings, customers: int, days: int, seed: int | None) -> None:
    """Synthetic data -> identities -> events store -> models trained, tracked and registered."""
    from features.cli import run_synth
    from training.customer_jobs import JobConfig
    from training.train_cli import JOBS, RECS_HORIZON_DAYS, run_jobs, run_recs

    seed = settings.seed if seed is None else seed
    console.print(f"[bold]omni run[/]  data home: {settings.home}")
    with user_errors():
        raw, result = run_synth(settings, customers, days, seed, end="2026-01-01", load=True)
        _report_identity_quality(raw, result)
        run_jobs(settings, JOBS, JobConfig(seed=seed))
        run_recs(settings, RECS_HORIZON_DAYS, seed)
    console.print(
        f"\n[bold]Done.[/] Events store: {settings.store_dir}\n"
        f"MLflow runs and registered models: {settings.tracking_uri}\n"
        f"  browse them: mlflow ui --backend-store-uri {settings.tracking_uri}\n"
        "  list versions and aliases: omni models list"
    )


def _report_identity_quality(raw, result) -> None:
    """Compare resolved customers with the generator's true person per event."""
    import pandas as pd

    from features.identity import merge_quality

    truth = pd.read_parquet(raw / "truth" / "event_person.parquet")["person_id"]
    resolved = result.load.data.events["customer_id"]  # same rows, same order as the raw file
    q = merge_quality(resolved, truth)
    say(
        f"identity resolution vs ground truth: pairwise precision {q.precision:.3f}, "
        f"recall {q.recall:.3f}"
    )
