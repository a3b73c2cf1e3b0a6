"""A freshly trained model next to the registered champion, on the same holdout.

The champion gate (:func:`training.model_registry.register_with_gate`, called by
:func:`training.runner.log_and_register`) decides what becomes ``@champion``; this module
shows the numbers behind that decision before it is taken, e.g. in
``notebooks/retrain_churn.ipynb``: the new model, the champion re-scored on the new
model's test cutoff (the same data and labels), and the job's baselines there.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from features.settings import Settings
from training.customer_models.job import JobResult, holdout_metrics

NEW = "new"


@dataclass(frozen=True)
class Comparison:
    """One row per model ("new", "champion v<N>", "baseline <name>"), one column per test
    metric (without the ``test_`` prefix); NaN where a baseline has no such metric."""

    name: str
    gate_metric: str  # a column of ``table``
    champion: int | None  # the champion's version, None when there is none
    table: pd.DataFrame

    @property
    def champion_row(self) -> str | None:
        return None if self.champion is None else f"champion v{self.champion}"

    @property
    def new_is_better(self) -> bool | None:
        """Whether the new model beats the champion on the gate metric (strictly, as the
        gate requires); None without a champion (the gate then promotes the new model)."""
        if self.champion is None:
            return None
        column = self.table[self.gate_metric]
        return bool(column[NEW] > column[self.champion_row])


def _metrics(values: dict[str, float], prefix: str) -> dict[str, float]:
    """``<prefix>test_<metric>`` entries as ``<metric>``; the positive rate is data, not a
    model's score, so it is left out."""
    start = f"{prefix}test_"
    return {
        k[len(start) :]: v
        for k, v in values.items()
        if k.startswith(start) and not k.endswith("positive_rate")
    }


def compare_with_champion(
    settings: Settings, result: JobResult, version: int | None = None
) -> Comparison:
    """The new model (``result``), the registered champion (or ``version``) re-scored on
    the result's test cutoff, and the job's baselines there."""
    import mlflow

    from training.model_registry import champion_version
    from training.tracking import use_tracking

    use_tracking(settings)
    if version is None:
        version = champion_version(settings, result.name)
    rows = {NEW: _metrics(result.metrics, "")}
    if version is not None:
        model = mlflow.pyfunc.load_model(f"models:/{result.name}/{version}")
        predictions = model.predict(result.test_X)
        rows[f"champion v{version}"] = _metrics(holdout_metrics(result, predictions), "")
    baselines = sorted({k.split("_test_")[0] for k in result.metrics if k.startswith("baseline_")})
    for b in baselines:
        rows[b.replace("_", " ", 1)] = _metrics(result.metrics, f"{b}_")
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "model"
    return Comparison(
        name=result.name,
        gate_metric=result.gate_metric.removeprefix("test_"),
        champion=version,
        table=table,
    )
