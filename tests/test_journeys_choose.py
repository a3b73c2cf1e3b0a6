"""Journey audience, channel and content (issue 18) on a Scorer of tiny models fitted here
in about two seconds (an in-memory snapshot: no registry, no files)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.contract.schema import OUTREACH_CHANNELS
from features.customer_features import build_customer_features
from features.labels import churn_labels, next_channel_labels
from features.sources.synthetic import generate
from serving.journeys.choose import choose_channels, choose_products, in_audience
from serving.journeys.spec import Journey
from serving.online import OnlineSnapshot
from serving.scoring import Scorer
from training.customer_models.classifiers import ChurnModel, NextChannelModel
from training.customer_models.labelled_sets import labelled_sets
from training.recs import Recommender

FOREST = {"n_estimators": 10, "min_child_samples": 5, "n_jobs": 1}
NOBODY, EMAIL_ONLY = "C0000001", "C0000002"


@pytest.fixture(scope="module")
def parts():
    """Events, features and fitted models of 150 synthetic customers; the first customer
    consents to nothing, the second to e-mail only."""
    source = generate(n_customers=150, days=120, seed=5)
    events = source.events.copy()
    events["customer_id"] = source.truth["event_person"]["person_id"].to_numpy()
    cutoff = events["ts"].max().floor("D") - pd.Timedelta(days=45)
    models, labelled = {}, {}
    for key, cls, label, column in (
        ("churn", ChurnModel, churn_labels, "churned"),
        ("next_best_channel", NextChannelModel, next_channel_labels, "channel"),
    ):
        X, y = labelled_sets(events, source.customers, [cutoff], label, column)[cutoff]
        labelled[key] = X, y
        models[key] = cls(params=dict(FOREST), random_state=0).fit(X, y)
    recommender = Recommender(
        horizon_days=14,
        n_train_cutoffs=1,
        ranker_params={"n_estimators": 10},
        factors=4,
        iterations=2,
        num_threads=1,
    )
    models["recommender"] = recommender.fit(
        events, source.customers, source.products, source.stores
    )
    as_of = models["recommender"].as_of_
    features = build_customer_features(events[events["ts"] < as_of], source.customers, as_of)
    for channel in OUTREACH_CHANNELS:
        features.loc[NOBODY, f"consent_{channel}"] = False
        features.loc[EMAIL_ONLY, f"consent_{channel}"] = channel == "email"
    return as_of, features, models, labelled


def _scorer(as_of, features, models) -> Scorer:
    return Scorer(OnlineSnapshot(Path("."), as_of, features, models, {"models": {}}))


@pytest.fixture(scope="module")
def scorer(parts) -> Scorer:
    as_of, features, models, _ = parts
    return _scorer(as_of, features, models)


def _journey(**kw) -> Journey:
    return Journey(name="j", trigger={"kind": "purchase"}, **kw)


def test_in_audience_conditions_tiers_and_nan():
    features = pd.DataFrame(
        {
            "orders_90d": [3.0, 0.0, np.nan, 5.0],
            "loyalty_tier": pd.array([3, 2, 3, -1], dtype="int8"),
        }
    )
    journey = _journey(
        audience={"where": [{"feature": "orders_90d", "op": "!=", "value": 0}]},
    )
    assert in_audience(journey, features).tolist() == [True, False, False, True]  # NaN fails
    gold = _journey(
        audience={
            "where": [{"feature": "orders_90d", "op": ">=", "value": 1}],
            "loyalty_tiers": ["gold", "silver"],
        }
    )
    assert in_audience(gold, features).tolist() == [True, False, False, False]
    assert in_audience(_journey(), features).all()


def test_fixed_channel(scorer):
    ids = [NOBODY, EMAIL_ONLY, "no-such-customer"]
    sms = _journey(channel={"choose": "fixed", "allowed": ["sms", "email"]})
    channels, proba = choose_channels(sms, scorer, ids)
    assert channels.tolist() == [None, None, None]  # fixed: allowed[0] or nothing
    assert np.isnan(proba).all()
    email = _journey(channel={"choose": "fixed", "allowed": ["email"]})
    channels, proba = choose_channels(email, scorer, ids)
    assert channels.tolist() == [None, "email", None]
    model = scorer.next_channel(scorer.positions([EMAIL_ONLY]))[0]
    assert proba[1] == pytest.approx(model[scorer.channels.index("email")])


def test_next_best_is_the_argmax_of_the_consented_allowed(scorer):
    allowed = ["sms", "push", "email"]
    journey = _journey(channel={"choose": "next_best", "allowed": allowed})
    ids = list(scorer.ids[:60])
    channels, proba = choose_channels(journey, scorer, ids)
    model = scorer.next_channel(scorer.positions(ids))
    columns = model[:, [scorer.channels.index(c) for c in allowed]]
    expect = np.array(allowed, dtype=object)[columns.argmax(axis=1)]
    expect[columns.max(axis=1) <= 0] = None
    assert channels.tolist() == expect.tolist()
    assert channels[0] is None and channels[1] == "email"  # consents planted in `parts`
    picked = columns.max(axis=1)
    assert np.allclose(proba[channels != None], picked[channels != None])  # noqa: E711


def test_a_channel_the_model_does_not_know_ranks_after_known_ones(parts):
    """A next-best-channel model that never saw sms: a consented sms comes after any
    consented channel the model ranks, and is chosen (probability NaN) only alone."""
    as_of, features, models, labelled = parts
    X, y = labelled["next_best_channel"]
    blind = NextChannelModel(params=dict(FOREST), random_state=0).fit(X, y.replace("sms", "email"))
    scorer = _scorer(as_of, features, {**models, "next_best_channel": blind})
    assert "sms" not in scorer.channels
    ids = list(scorer.ids[:40])
    journey = _journey(channel={"allowed": ["sms", "push"]})
    channels, proba = choose_channels(journey, scorer, ids)
    push = features.loc[ids, "consent_push"].to_numpy(dtype=bool)
    sms = features.loc[ids, "consent_sms"].to_numpy(dtype=bool)
    assert (channels[push] == "push").all()
    assert (channels[~push & sms] == "sms").all() and np.isnan(proba[~push & sms]).all()
    assert all(c is None for c in channels[~push & ~sms])


def test_trigger_products_truncated_to_k(scorer):
    journey = _journey(content={"source": "trigger", "k": 2})
    got = choose_products(
        journey,
        scorer,
        ["a", "b", "c"],
        np.array(["email", None, "sms"]),
        [["p1", "p2", "p3"], [], ["p4"]],
    )
    assert got == [["p1", "p2"], [], ["p4"]]


def test_recommender_products_equal_scorer_recommend_in_the_channel(scorer):
    journey = _journey(content={"source": "recommender", "k": 3})
    ids = [*scorer.ids[:12], "no-such-customer"]
    channels = np.array(["email", "sms", None] * 4 + ["push"], dtype=object)
    got = choose_products(journey, scorer, ids, channels, [[] for _ in ids])
    for i, (customer, channel) in enumerate(zip(ids, channels, strict=True)):
        recs = scorer.recommend([customer], 3, channel=channel)
        assert got[i] == scorer.recommendation_frame([customer], recs)["product_id"].tolist()
    assert all(len(p) == 3 for p in got)
