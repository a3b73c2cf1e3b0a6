"""`omni monitor`: drift of what the served models score now against what they were
trained on, for a schedule (cron or an orchestrator acts on the exit code)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from features.console import console, fail, say, user_errors
from training.job_names import FAIL_ABOVE, WARN_ABOVE


def monitor(
    ctx: typer.Context,
    warn_above: Annotated[
        float, typer.Option(min=0, help="Print every PSI over this (0.1: worth a look).")
    ] = WARN_ABOVE,
    fail_above: Annotated[
        float, typer.Option(min=0, help="Exit 1 when a PSI is over this (0.25: shifted).")
    ] = FAIL_ABOVE,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the whole report as one JSON document.")
    ] = False,
) -> None:
    """Compare the newest online snapshot's feature table, and the churn and channel scores
    on it, with the training data of its champions (the features as of their last
    training cutoff): population stability index (PSI) per feature and score, and the
    share of cold-start customers. Logged to MLflow (experiment omni-monitor); exit 1 when
    a PSI is over --fail-above, 0 otherwise, 2 when it cannot run."""
    from serving.online import SnapshotError, latest_snapshot, load_snapshot

    settings = ctx.obj
    with user_errors():
        try:
            snapshot = load_snapshot(latest_snapshot(settings))
        except SnapshotError as exc:
            raise fail(str(exc)) from None
        cutoff = _training_cutoff(settings, snapshot)
        tell = (lambda _m: None) if as_json else say  # stdout is the JSON document
        report, features = _report(settings, snapshot, cutoff, tell)
    run_id = _log(settings, snapshot, cutoff, report, fail_above)
    over_warn, over_fail = report.above(warn_above), report.above(fail_above)
    if as_json:
        document = {
            "snapshot": snapshot.path.name,
            "as_of": snapshot.as_of.isoformat(),
            "reference_cutoff": cutoff.isoformat(),
            "psi": report.values(),
            "cold_share": dict(zip(("reference", "current"), report.cold_share, strict=True)),
            "above_fail": over_fail,
            "mlflow_run_id": run_id,
        }
        typer.echo(json.dumps(document, indent=2))
    else:
        console.print(
            f"drift of snapshot {snapshot.path.name} (as of {snapshot.as_of:%Y-%m-%d}) "
            f"against the training data (as of {cutoff:%Y-%m-%d}): {len(features)} features, "
            f"{len(report.scores)} scores"
        )
        for name, value in over_warn.items():
            mark = "shifted" if value > fail_above else "worth a look"
            say(f"PSI {value:6.3f}  {name}  ({mark})")
        if not over_warn:
            say(f"every PSI is at most {warn_above}")
        ref, cur = report.cold_share
        say(f"cold-start customers: {ref:.1%} at training, {cur:.1%} now")
        say(f"logged to MLflow run {run_id} (experiment omni-monitor)")
    if over_fail:
        worst = next(iter(over_fail))
        raise fail(
            f"{len(over_fail)} PSI over {fail_above} (worst: {worst} {over_fail[worst]:.3f})",
            code=1,
        )


def _training_cutoff(settings, snapshot):
    """The last training cutoff of the snapshot's champions (their MLflow runs' params)."""
    import mlflow
    import pandas as pd

    from training.tracking import use_tracking

    client = mlflow.MlflowClient(use_tracking(settings))
    for source in snapshot.manifest["models"].values():
        params = client.get_run(source["run_id"]).data.params
        if "cutoff_train_cutoffs" in params:
            return max(pd.Timestamp(t, tz="UTC") for t in params["cutoff_train_cutoffs"].split(","))
    raise ValueError("the snapshot's models' runs record no training cutoffs")


def _report(settings, snapshot, cutoff, tell):
    """The drift report, and the features compared."""
    from features.build import features_from_store
    from training.monitoring import drift_report

    models = snapshot.models
    churn, channel = models.get("churn"), models.get("next_best_channel")
    recommender = models.get("recommender")
    features = sorted({f for m in (churn, channel) if m is not None for f in m.features_})
    reference, _ = features_from_store(settings.store_dir, cutoff, progress=tell)
    cold = recommender.lookback_days if recommender is not None else None
    report = drift_report(reference, snapshot.features, features, churn, channel, cold)
    return report, features


def _log(settings, snapshot, cutoff, report, fail_above) -> str:
    """One MLflow run of the report; its id."""
    from training import tracking

    params = {
        "snapshot": snapshot.path.name,
        "as_of": snapshot.as_of.isoformat(),
        "reference_cutoff": cutoff.isoformat(),
        "fail_above": fail_above,
    }
    with tracking.tracked_run(settings, "monitor", params=params) as run:
        metrics = {f"psi_{k.replace(':', '_')}": v for k, v in report.values().items()}
        ref, cur = report.cold_share
        tracking.log_metrics({**metrics, "cold_share_reference": ref, "cold_share_current": cur})
        tracking.log_json({"psi": report.values(), "cold_share": [ref, cur]}, "drift.json")
    return run.info.run_id
