"""MLflow pyfunc wrapper: the whole fitted recommender (index, factors, popularity
tables, customer histories, ranker) travels inside the logged model.

Input: one row per customer: ``customer_id``, and optionally ``store_id`` / ``channel``
(the request context: where the list will be shown). Output: the ``recommend`` frame
(customer_id, rank, product_id, score, reason). ``params={"k": 20}`` changes the list
length (default 10). The lists are those the service shows: products resting after a
purchase are left out (``Recommender.recommend(rest_bought=True)``).
"""

from __future__ import annotations

from typing import Any

import mlflow
import pandas as pd

DEFAULT_K = 10


class RecommenderPyfunc(mlflow.pyfunc.PythonModel):
    """Top-k recommendations with reasons for the customers of the input frame."""

    def __init__(self, model: Any, k: int = DEFAULT_K) -> None:
        self.model = model
        self.k = k

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> pd.DataFrame:
        """Ranked products per input customer."""
        if "customer_id" not in model_input.columns:
            raise ValueError("input needs a customer_id column")
        k = int((params or {}).get("k", self.k))
        ctx_cols = [c for c in ("store_id", "channel") if c in model_input.columns]
        context = None
        if ctx_cols:
            context = model_input[["customer_id", *ctx_cols]].copy()
            for c in ctx_cols:  # missing values and empty strings mean "no context"
                values = context[c].astype(object)
                context[c] = values.where(values.notna() & (values != ""), None)
        ids = model_input["customer_id"].astype("str")
        out = self.model.recommend(ids, k=k, context=context, rest_bought=True)
        out["reason"] = out["reason"].astype("str")
        return out
