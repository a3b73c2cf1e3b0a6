"""One estimator contract, run against every model (issue 15): churn, next best channel, the
two-stage recommender and its three baselines.

Each is a scikit-learn estimator: the constructor only stores hyperparameters, ``fit``
returns self and learns state in attributes ending in ``_``, ``clone`` gives an unfitted
copy, the same seed gives the same predictions (so does fitting again), prediction before
``fit`` raises ``NotFittedError``, and input lacking a column the model needs is an error
naming it. The classifiers predict (rows x ``classes_``) probabilities, the recommenders
ranked lists. A new model joins by adding a case to ``CASES``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, clone
from sklearn.exceptions import NotFittedError

from features.labels import churn_labels, next_channel_labels
from features.sources.synthetic import generate
from training.customer_models.classifiers import ChurnModel, NextChannelModel
from training.customer_models.labelled_sets import labelled_sets
from training.recs import (
    REASONS,
    ALSRecommender,
    BuyAgainRecommender,
    PopularityRecommender,
    Recommender,
)

K = 5
FAST_FOREST = {"n_estimators": 30, "min_child_samples": 5, "n_jobs": 1}
FAST_ALS = {"factors": 8, "iterations": 3, "num_threads": 1}


@dataclass
class Data:
    """Contract frames of 400 synthetic customers over 150 days, and the customer models'
    (features, labels) at a training and a validation cutoff."""

    events: pd.DataFrame
    customers: pd.DataFrame
    products: pd.DataFrame
    stores: pd.DataFrame
    labelled: dict[str, tuple[tuple[pd.DataFrame, pd.Series], tuple[pd.DataFrame, pd.Series]]]


@pytest.fixture(scope="module")
def data() -> Data:
    source = generate(n_customers=400, days=150, seed=3)
    events = source.events.copy()
    events["customer_id"] = source.truth["event_person"]["person_id"].to_numpy()
    end = events["ts"].max().floor("D")
    train, valid = end - pd.Timedelta(days=90), end - pd.Timedelta(days=60)
    labelled = {}
    for name, label, column in (
        ("churn", churn_labels, "churned"),
        ("channel", next_channel_labels, "channel"),
    ):
        snaps = labelled_sets(events, source.customers, [train, valid], label, column)
        labelled[name] = (snaps[train], snaps[valid])
    return Data(events, source.customers, source.products, source.stores, labelled)


class ClassifierCase:
    """A customer model: ``fit(X, y)`` on the feature table, ``predict_proba(X)``."""

    def __init__(self, name: str, cls: type, labels: str) -> None:
        self.name, self.cls, self.labels = name, cls, labels
        self.learned = ("features_", "classes_", "booster_", "best_iteration_")

    def make(self, random_state: int = 0) -> BaseEstimator:
        return self.cls(params=dict(FAST_FOREST), random_state=random_state)

    def fit(self, model: BaseEstimator, data: Data) -> BaseEstimator:
        (X, y), _ = data.labelled[self.labels]
        return model.fit(X, y)

    def predict(self, model: BaseEstimator, data: Data) -> np.ndarray:
        (X, _), _ = data.labelled[self.labels]
        return model.predict_proba(X)

    def check_predictions(self, model: BaseEstimator, data: Data) -> None:
        (X, y), _ = data.labelled[self.labels]
        proba = self.predict(model, data)
        assert isinstance(proba, np.ndarray) and proba.dtype == np.float64
        assert proba.shape == (len(X), len(model.classes_))
        np.testing.assert_array_equal(model.classes_, np.unique(y))
        assert ((proba >= 0) & (proba <= 1)).all()
        np.testing.assert_allclose(proba.sum(axis=1), 1.0)
        picks = model.predict(X)
        np.testing.assert_array_equal(picks, model.classes_[proba.argmax(axis=1)])

    def check_bad_input(self, model: BaseEstimator, data: Data) -> None:
        (X, y), _ = data.labelled[self.labels]
        needed = model.features_[3]
        with pytest.raises(ValueError, match=needed):
            model.predict_proba(X.drop(columns=needed))
        with pytest.raises(TypeError, match="X must be a pandas DataFrame"):
            self.make().fit(X.to_numpy(), y)
        with pytest.raises(ValueError, match=r"y has \d+ labels for \d+ rows"):
            self.make().fit(X, y.iloc[1:])
        one_class = self.make()
        with pytest.raises(ValueError, match=r"needs (at least )?two \w+ in y"):
            one_class.fit(X, pd.Series(y.iloc[0], index=y.index))
        with pytest.raises(NotFittedError):  # a failed fit leaves no half-fitted model
            one_class.predict_proba(X)


class RecommenderCase:
    """A recommender: ``fit(events, customers, products, stores)``, ``recommend(ids, k)``."""

    def __init__(self, name: str, cls: type, **params: Any) -> None:
        self.name, self.cls, self.params = name, cls, params
        self.learned = ("catalogue_", "state_", "as_of_")

    def make(self, random_state: int = 0) -> BaseEstimator:
        return self.cls(**self.params, random_state=random_state)

    def fit(self, model: BaseEstimator, data: Data) -> BaseEstimator:
        return model.fit(data.events, data.customers, data.products, data.stores)

    def predict(self, model: BaseEstimator, data: Data) -> pd.DataFrame:
        known = data.customers["customer_id"].iloc[:30].tolist()
        return model.recommend([*known, "NEVER-SEEN"], k=K)

    def check_predictions(self, model: BaseEstimator, data: Data) -> None:
        recs = self.predict(model, data)
        assert list(recs.columns) == ["customer_id", "rank", "product_id", "score", "reason"]
        assert recs.groupby("customer_id", sort=False).size().eq(K).all()
        assert recs["customer_id"].nunique() == 31  # the unknown customer gets a list too
        assert recs["rank"].dtype == np.int16 and recs["score"].dtype == np.float32
        assert recs["product_id"].isin(model.catalogue_.item_ids).all()
        assert set(recs["reason"].astype(str)) <= set(REASONS)

    def check_bad_input(self, model: BaseEstimator, data: Data) -> None:
        with pytest.raises(ValueError, match="product_id"):
            self.make().fit(data.events.drop(columns="product_id"), data.customers)
        anonymous = data.events.assign(customer_id=None)  # identifiers only
        with pytest.raises(ValueError, match="nothing to fit"):
            self.make().fit(anonymous, data.customers)


CASES = [
    ClassifierCase("churn", ChurnModel, "churn"),
    ClassifierCase("next_best_channel", NextChannelModel, "channel"),
    RecommenderCase(
        "recommender",
        Recommender,
        horizon_days=14,
        n_train_cutoffs=2,
        ranker_params={"n_estimators": 30},
        **FAST_ALS,
    ),
    RecommenderCase("popularity", PopularityRecommender),
    RecommenderCase("buy_again", BuyAgainRecommender),
    RecommenderCase("als", ALSRecommender, **FAST_ALS),
]
CLASSIFIERS = [c for c in CASES if isinstance(c, ClassifierCase)]
each_model = pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)


@pytest.fixture(scope="module")
def fitted(data) -> dict[str, BaseEstimator]:
    return {case.name: case.fit(case.make(), data) for case in CASES}


def assert_same(a: object, b: object) -> None:
    """One code path run twice: compared exactly."""
    if isinstance(a, pd.DataFrame):
        pd.testing.assert_frame_equal(a, b)
    else:
        np.testing.assert_array_equal(a, b)


@each_model
def test_constructor_only_stores_hyperparameters(case):
    model = case.make()
    assert vars(model) == model.get_params(deep=False)


@each_model
def test_fit_returns_self_learns_underscore_state_and_keeps_hyperparameters(case, data):
    model = case.make()
    params = model.get_params()
    assert case.fit(model, data) is model
    for name in case.learned:
        assert hasattr(model, name), name
    assert model.get_params() == params


@each_model
def test_predictions_have_the_contract_shape(case, fitted, data):
    case.check_predictions(fitted[case.name], data)


@each_model
def test_same_seed_same_predictions_and_refitting_changes_nothing(case, fitted, data):
    first = case.predict(fitted[case.name], data)
    again = case.fit(case.make(), data)
    assert_same(case.predict(again, data), first)
    assert_same(case.predict(case.fit(again, data), data), first)


@each_model
def test_clone_is_an_unfitted_copy_with_the_same_hyperparameters(case, fitted, data):
    model = fitted[case.name]
    copy = clone(model)
    assert copy is not model and copy.get_params() == model.get_params()
    with pytest.raises(NotFittedError, match="not fitted"):
        case.predict(copy, data)
    assert copy.set_params(random_state=7) is copy and copy.random_state == 7


@each_model
def test_predicting_before_fit_is_a_not_fitted_error(case, data):
    with pytest.raises(NotFittedError, match="not fitted"):
        case.predict(case.make(), data)


@each_model
def test_bad_input_is_an_error_naming_what_is_wrong(case, fitted, data):
    case.check_bad_input(fitted[case.name], data)


@pytest.mark.parametrize("case", CLASSIFIERS, ids=lambda c: c.name)
def test_a_validation_set_stops_early_and_keeps_the_prediction_shape(case, data):
    """The jobs' path: early stopping (and churn's calibration) on the validation cutoff."""
    (X, y), (X_valid, y_valid) = data.labelled[case.labels]
    model = case.make().set_params(params={**FAST_FOREST, "n_estimators": 400})
    assert model.fit(X, y, X_valid, y_valid) is model
    assert 1 <= model.best_iteration_ < 400
    case.check_predictions(model, data)
    with pytest.raises(ValueError, match="X_valid and y_valid together"):
        case.make().fit(X, y, X_valid)
