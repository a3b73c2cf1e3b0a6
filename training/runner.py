"""Run a training job end to end: read the store, fit, log to MLflow, register through the gate."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from features.settings import Settings
from training.customer_models.job import JobConfig, JobResult, train_churn, train_next_channel
from training.job_names import REGISTERED_NAMES

Say = Callable[[str], None]


@dataclass
class TrainOutcome:
    """What a job produced and what the registry decided."""

    result: JobResult
    run_id: str
    decision: object  # training.model_registry.GateDecision


def load_training_data(settings: Settings) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Events and customers from the store (the embedded default, or a user's)."""
    from features.store.events import read_events, read_table

    return read_events(settings.store_dir), read_table(settings.store_dir, "customers")


def rescore_champion(settings: Settings, name: str, result: JobResult, say: Say) -> float | None:
    """The current champion's gate metric on this run's test cutoff, so that a retrain on
    newer data is compared on the same holdout. None when there is no champion or it
    cannot score this feature table (then the gate compares stored values, if comparable)."""
    import mlflow

    from training.customer_models.job import gate_value
    from training.model_registry import champion_version

    version = champion_version(settings, name)
    if version is None:
        return None
    try:
        champion = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
        value = gate_value(result, champion.predict(result.test_X))
    except Exception as exc:  # e.g. trained on another feature list
        say(f"[yellow]could not re-score the {name} champion on this holdout[/]: {exc}")
        return None
    say(f"{name} champion v{version} on this holdout: {result.gate_metric} {value:.4f}")
    return value


def run_customer_job(
    settings: Settings,
    job: str,
    events: pd.DataFrame,
    customers: pd.DataFrame,
    config: JobConfig = JobConfig(),
    say: Say = lambda _m: None,
) -> TrainOutcome:
    """Train ``job`` ("churn" or "channel"), log everything, gate and register the model."""
    fit = {"churn": train_churn, "channel": train_next_channel}[job]
    result = fit(events, customers, config)
    say(f"{result.name}: fitted in {result.seconds:.1f} s on {result.rows}")
    return log_and_register(settings, result, events, say)


def log_and_register(
    settings: Settings, result: JobResult, events: pd.DataFrame, say: Say = lambda _m: None
) -> TrainOutcome:
    """Log a fitted churn / channel result (trained on ``events``) as an MLflow run, re-score
    the champion on its test cutoff, and register it through the champion gate."""
    from training import tracking
    from training.customer_models.pyfunc import ChurnPyfunc, NextChannelPyfunc
    from training.model_io import log_lightgbm_booster, log_python_model
    from training.model_registry import register_with_gate

    name = result.name
    if name not in REGISTERED_NAMES.values():
        raise ValueError(f"no registered model for a {name!r} result")
    wrapper = ChurnPyfunc(result.model) if name == "churn" else NextChannelPyfunc(result.model)
    title = tracking.run_name(name, result.split)
    with tracking.tracked_run(settings, name, params=result.params, run_name=title) as run:
        split = result.split.as_params()
        fingerprint = tracking.log_dataset(events, source=settings.events_dir, cutoffs=split)
        tracking.log_lightgbm_params(result.model.booster_)
        seconds = {"seconds_fit_model": result.fit_seconds, "seconds_job": result.seconds}
        tracking.log_metrics({**result.metrics, **result.class_metrics, **seconds})
        tracking.log_features(result.model.features_, result.split.as_params())
        for file, figure in result.figures.items():
            tracking.log_figure(figure, file)
        if result.importance is not None:
            tracking.log_json(result.importance.round(3).to_dict(), "feature_importance.json")
        example = result.input_example
        info = log_python_model(
            wrapper,
            artifacts=None,
            signature_df=example,
            input_example=example,
            output_example=wrapper.predict(None, example),
        )
        model = result.model
        log_lightgbm_booster(model.booster_.booster_, "booster", model.booster_features_)
        holdout = {**result.split.as_params(), "data_fingerprint": fingerprint}
        champion_value = rescore_champion(settings, name, result, say)
        decision = register_with_gate(
            settings,
            name,
            run.info.run_id,
            info.model_uri,
            result.gate_metric,
            result.metrics[result.gate_metric],
            holdout=holdout,
            champion_value=champion_value,
        )
    return TrainOutcome(result=result, run_id=run.info.run_id, decision=decision)
