"""MLflow pyfunc wrappers of the churn and next-best-channel models.

Input: the customer feature table (one row per customer, index customer_id, the
registry's columns). The channel model applies consent from the table's ``consent_*``
columns itself, so every caller of the logged model gets the served numbers.
"""

from __future__ import annotations

from typing import Any

import mlflow
import pandas as pd

from features.contract.consent import apply_consent
from features.contract.schema import CONSENT_COLUMNS


class ChurnPyfunc(mlflow.pyfunc.PythonModel):
    """Calibrated churn probability per customer row."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> pd.DataFrame:
        """``churn_probability`` for each input row."""
        proba = self.model.predict_proba(model_input)[:, 1]  # columns: stays, churns
        return pd.DataFrame({"churn_probability": proba}, index=model_input.index)


class NextChannelPyfunc(mlflow.pyfunc.PythonModel):
    """Probability per channel after consent (unconsented channels are 0, rows sum to 1)."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> pd.DataFrame:
        """One column per channel the model knows."""
        proba = self.model.predict_proba_frame(model_input)
        consent = pd.DataFrame({"customer_id": proba.index.astype(str)})
        for column in CONSENT_COLUMNS.values():
            if column in model_input.columns:
                consent[column] = model_input[column].to_numpy(dtype=bool, na_value=False)
        proba.index = proba.index.astype(str)
        out = apply_consent(proba, consent)
        out.index = model_input.index
        return out
