"""Log a model so that ``models:/NAME@champion`` is enough to score on another machine.

The model is logged with our own source (``features/``, ``training/``) as MLflow code
paths, so unpickling it imports the bundled copy, and with pinned requirements, so
MLflow never infers them (inference loads the model in a subprocess: many seconds).
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.models import infer_signature
from mlflow.models.model import ModelInfo

import features
import training
from training.tracking import pip_requirements


def code_paths() -> list[str]:
    """Our packages as MLflow bundles them with a model (``<model>/code/features`` ...)."""
    return [str(Path(pkg.__file__).parent) for pkg in (features, training)]


def log_python_model(
    python_model: mlflow.pyfunc.PythonModel,
    artifacts: Mapping[str, str | Path] | None,
    signature_df: pd.DataFrame,
    input_example: Any,
    name: str = "model",
    output_example: Any = None,
    metadata: Mapping[str, Any] | None = None,
) -> ModelInfo:
    """Log a pyfunc model in the active run, with our code and pinned requirements.

    ``signature_df`` is a frame of model inputs (its columns and dtypes become the input
    signature); ``output_example`` a prediction, for the output signature. ``artifacts``
    are files the model reads in ``load_context`` (copied into the model). Register the
    returned ``model_uri`` with :func:`training.model_registry.register_with_gate`.
    """
    with _without_known_noise():
        signature = infer_signature(signature_df, output_example)
        return mlflow.pyfunc.log_model(
            name=name,
            python_model=python_model,
            artifacts={k: str(v) for k, v in (artifacts or {}).items()} or None,
            code_paths=code_paths(),
            pip_requirements=pip_requirements(),
            signature=signature,
            input_example=input_example,
            metadata=dict(metadata) if metadata else None,
        )


def log_lightgbm_booster(booster: Any, name: str, feature_names: Sequence[str]) -> ModelInfo:
    """Log a ``lightgbm.Booster`` in MLflow's ``lightgbm`` flavour in the active run, so that
    ``mlflow.lightgbm.load_model(f"runs:/{run_id}/{name}")`` returns the raw booster.

    Saved in LightGBM's own text format (no pickle, none of our code), with the pyfunc's
    pinned requirements and without signature or input example, so nothing is loaded or
    inferred (a few hundredths of a second). ``feature_names``: the booster's input
    columns in order, kept as the model's metadata (``MLmodel``).
    """
    with _without_known_noise():
        return mlflow.lightgbm.log_model(
            booster,
            name=name,
            pip_requirements=pip_requirements(),
            metadata={"feature_names": list(feature_names)},
        )


_NOISE = (
    "Passing a Python object as `python_model`",  # we log classes from our bundled code
    "Failed to resolve installed pip version",  # uv venvs have no pip; requirements are pinned
    "Validating input example against model signature",
)


def _drop_noise(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith(_NOISE)


@contextlib.contextmanager
def _without_known_noise() -> Iterator[None]:
    """Silence MLflow's routine messages while logging a model (real warnings still show)."""
    loggers = [logging.getLogger(n) for n in ("mlflow.pyfunc", "mlflow.utils.environment")]
    for logger in loggers:
        logger.addFilter(_drop_noise)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*Add type hints to the `predict`")
            # our pyfuncs turn every feature into float32 themselves: a missing value in an
            # integer column cannot break them
            warnings.filterwarnings("ignore", message=r"Hint: Inferred schema contains integer")
            yield
    finally:
        for logger in loggers:
            logger.removeFilter(_drop_noise)


class EstimatorModel(mlflow.pyfunc.PythonModel):
    """A fitted classifier with ``predict_proba`` and the feature columns it was fitted on.

    Predicts one probability column per class, whatever the column order of the input.
    """

    def __init__(self, estimator: Any, features: Sequence[str]) -> None:
        self.estimator = estimator
        self.features = list(features)

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> pd.DataFrame:
        """Class probabilities for each input row."""
        missing = [c for c in self.features if c not in model_input.columns]
        if missing:
            raise ValueError(f"input lacks feature columns: {', '.join(missing)}")
        proba = self.estimator.predict_proba(model_input[self.features])
        classes = [str(c) for c in self.estimator.classes_]
        return pd.DataFrame(proba, columns=classes, index=model_input.index)
