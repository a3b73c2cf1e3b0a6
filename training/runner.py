"""Run a training job end to end: read the store, fit, log to MLflow, register through the gate."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from features.settings import Settings
from training.customer_jobs import JobConfig, JobResult, train_churn, train_next_channel

Say = Callable[[str], None]

REGISTERED_NAMES = {"churn": "churn", "channel": "next_best_channel"}


@dataclass
class TrainOutcome:
    """What a job produced and what the registry decided."""

    result: JobResult
    run_id: str
    decision: object  # training.registry.GateDecision


def load_training_data(settings: Settings) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Events and customers from the store (the embedded default, or a user's)."""
    from features.store import read_events, read_table

    return read_events(settings.store_dir), read_table(settings.store_dir, "customers")


def run_customer_job(
    settings: Settings,
    job: str,
    events: pd.DataFrame,
    customers: pd.DataFrame,
    config: JobConfig = JobConfig(),
    say: Say = lambda _m: None,
) -> TrainOutcome:
    """Train ``job`` ("churn" or "channel"), log everything, gate and register the model."""
    from training import tracking
    from training.customer_pyfunc import ChurnPyfunc, NextChannelPyfunc
    from training.model_io import log_python_model
    from training.registry import register_with_gate

    fit = {"churn": train_churn, "channel": train_next_channel}[job]
    result = fit(events, customers, config)
    say(f"{result.name}: fitted in {result.seconds:.1f} s on {result.rows}")
    name = REGISTERED_NAMES[job]
    wrapper = ChurnPyfunc(result.model) if job == "churn" else NextChannelPyfunc(result.model)
    with tracking.tracked_run(settings, name, params=result.params) as run:
        fingerprint = tracking.log_dataset(events)
        tracking.log_metrics(result.metrics)
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
        holdout = {**result.split.as_params(), "data_fingerprint": fingerprint}
        decision = register_with_gate(
            settings,
            name,
            run.info.run_id,
            info.model_uri,
            result.gate_metric,
            result.metrics[result.gate_metric],
            holdout=holdout,
        )
    return TrainOutcome(result=result, run_id=run.info.run_id, decision=decision)
