"""The recommender's live parts (issue 17): the session source, resting products, and a
fitted model re-ranking a few customers from their own events.

``Recommender.for_customers`` rebuilds the customer parts of the fitted state from those
customers' events alone; over the same events as of the fitted cutoff it must give the
fitted model's own lists, and after new events it must give what a state built over all
events would give for those customers' parts.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.sources.synthetic import generate
from training.recs import History, Recommender
from training.recs.candidates import REASONS, resting
from training.recs.cutoff_state import CUSTOMER_FIELDS, build_cutoff_state

FAST = {"iterations": 6, "factors": 16, "n_train_cutoffs": 2}


@pytest.fixture(scope="module")
def synth():
    data = generate(n_customers=800, days=150, seed=5)
    data.events["customer_id"] = data.truth["event_person"]["person_id"].to_numpy()
    return data


@pytest.fixture(scope="module")
def fitted(synth) -> Recommender:
    return Recommender(random_state=0, **FAST).fit(
        synth.events, synth.customers, synth.products, synth.stores
    )


def _product_events(events: pd.DataFrame, ids) -> pd.DataFrame:
    return events[events["customer_id"].isin(list(ids)).to_numpy()]


def test_for_customers_over_the_same_events_gives_the_fitted_lists(fitted, synth):
    ids = pd.Index(fitted.catalogue_.customer_ids[:60], dtype="str")
    own = fitted.for_customers(_product_events(synth.events, ids), ids, fitted.as_of_)
    expected = fitted.recommend(ids, k=10)
    got = own.recommend(ids, k=10)
    pd.testing.assert_frame_equal(
        got.drop(columns="score"), expected.drop(columns="score"), check_categorical=False
    )
    np.testing.assert_allclose(got["score"], expected["score"], rtol=1e-5, atol=1e-6)


def test_customer_parts_after_new_events_equal_a_full_build(fitted, synth):
    """A view, a cart and a store purchase after the cutoff: the rebuilt customer parts
    equal those of a state built over every event, as of the same moment."""
    cat = fitted.catalogue_
    who = str(cat.customer_ids[3])
    products = [str(p) for p in cat.item_ids[:3]]
    at = fitted.as_of_ + pd.Timedelta(hours=2)
    new = synth.events.iloc[:0].copy()
    rows = [
        ("view", products[0], "web", None),
        ("add_to_cart", products[1], "web", None),
        ("purchase", products[2], "store", str(cat.store_ids[0])),
    ]
    for i, (kind, product, channel, store) in enumerate(rows):
        new.loc[i, ["event_id", "customer_id", "event_type", "product_id", "channel"]] = [
            f"live-{i}",
            who,
            kind,
            product,
            channel,
        ]
        new.loc[i, "store_id"] = store
        new.loc[i, "ts"] = at + pd.Timedelta(minutes=i)
        new.loc[i, "quantity"] = 1
    new = new.astype(synth.events.dtypes.to_dict())
    everything = pd.concat([synth.events, new], ignore_index=True)
    clock = at + pd.Timedelta(minutes=10)
    ids = pd.Index([who, str(cat.customer_ids[4])], dtype="str")
    live = fitted.for_customers(_product_events(everything, ids), ids, clock)
    full = build_cutoff_state(
        History.from_frames(everything, synth.customers, synth.products, synth.stores),
        clock,
        fitted.state_.params,
        None,
        0,
    )
    codes = cat.customer_codes(ids)  # the same catalogue: no new product or customer
    for name in CUSTOMER_FIELDS:
        a, b = getattr(live.state_, name), getattr(full, name)
        if isinstance(a, np.ndarray):
            np.testing.assert_allclose(a, b[codes], rtol=1e-6, err_msg=name)
        else:  # PairTable: the customers' pairs, columns equal
            for j, code in enumerate(codes):
                _, mine = a.slices(np.array([j]))
                _, theirs = b.slices(np.array([code]))
                assert (a.col_of(mine) == b.col_of(theirs)).all(), name
                for column, values in a.columns.items():
                    np.testing.assert_allclose(
                        values[mine], b.columns[column][theirs], rtol=1e-5, err_msg=name
                    )
    recs = live.recommend([who], k=20)
    assert (
        products[2] not in set(recs["product_id"])
        or not resting(live.state_, np.array([0]), np.array([cat.item_codes([products[2]])[0]]))[0]
    )
    looked = recs[recs["product_id"].isin(products[:2])]
    assert set(looked["reason"].astype(str)) <= {"you looked at this", "buy again"}


def test_a_product_just_bought_rests_in_served_lists(fitted, synth):
    """Served lists (``rest_bought``) leave out what the customer bought within their
    usual gap; the plain lists keep it."""
    state, cat = fitted.state_, fitted.catalogue_
    b = state.bought
    pos = np.arange(len(b))
    codes, items = b.row_of(pos), b.col_of(pos)
    rests = resting(state, codes, items)
    assert rests.any() and not rests.all()
    rows = np.flatnonzero(rests)[:200]
    ids = pd.Index(np.unique(cat.customer_ids[codes[rows]]), dtype="str")
    n = len(ids)
    shown = fitted.recommend_codes(
        cat.customer_codes(ids),
        np.full(n, -1, np.int32),
        np.full(n, -1, np.int32),
        50,
        np.zeros(0, np.int64),
        rest_bought=True,
    )
    key = cat.customer_codes(ids)[shown[0]].astype(np.int64) * cat.n_items + shown[1]
    resting_keys = codes[rests].astype(np.int64) * cat.n_items + items[rests]
    assert not np.isin(key, resting_keys).any()
    plain = fitted.recommend(ids, k=50)
    plain_key = cat.customer_codes(plain["customer_id"]).astype(np.int64) * cat.n_items
    plain_key += cat.item_codes(plain["product_id"])
    assert np.isin(plain_key, resting_keys).any()


def test_session_products_are_candidates_with_their_reason(fitted):
    state = fitted.state_
    assert state.session is not None and len(state.session) > 0
    assert "you looked at this" in REASONS
    importance = fitted.feature_importance()
    assert {"src_session", "session_views", "session_hours_ago"} <= set(importance.index)
