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


def test_fold_in_solves_implicits_least_squares():
    # issue 17: a new customer's ALS factors, by hand: x = (Y'Y + reg I + sum (c_i - 1)
    # y_i y_i')^-1 sum c_i y_i, with c_i = alpha * weight_i (implicit's formula)
    import scipy.sparse as sp

    from training.recs.als import ALSParams, fold_in

    rng = np.random.default_rng(3)
    items = rng.normal(size=(12, 4)).astype(np.float32)
    params = ALSParams(factors=4, regularization=0.3, alpha=2.0)
    row = sp.csr_matrix(([1.5, 0.5, 3.0], ([0, 0, 0], [2, 5, 9])), shape=(1, 12), dtype=np.float32)
    a = items.T @ items + params.regularization * np.eye(4)
    b = np.zeros(4)
    for i, weight in zip(row.indices, row.data, strict=True):
        c = params.alpha * weight
        a += (c - 1) * np.outer(items[i], items[i])
        b += c * items[i]
    np.testing.assert_allclose(fold_in(items, row, params)[0], np.linalg.solve(a, b), rtol=1e-4)


def test_bm25_of_some_rows_with_the_matrix_norm_equals_those_rows_of_the_matrix():
    import scipy.sparse as sp

    from training.recs.interactions import bm25, bm25_norm

    m = sp.random(60, 25, density=0.2, random_state=2, format="csr", dtype=np.float32) * 4
    rows = [1, 8, 30]
    some = bm25(m[rows], 10.0, 0.8, bm25_norm(m, 0.8))
    np.testing.assert_allclose(some.toarray(), bm25(m, 10.0, 0.8)[rows].toarray(), rtol=1e-6)
    assert not np.allclose(bm25(m[rows], 10.0, 0.8).toarray(), some.toarray())  # norm matters


def test_a_new_customer_gets_als_factors_folded_in_from_their_events(fitted, synth):
    # issue 17: a customer the snapshot never saw, with the very history of a fitted
    # customer, gets ALS factors from those events that point where the fitted
    # customer's do (before: none until the next snapshot); a known customer keeps theirs
    from training.recs.candidates import personal

    cat, state = fitted.catalogue_, fitted.state_
    known = str(cat.customer_ids[5])
    bought = synth.events[synth.events["event_type"] == "purchase"]
    donor = bought["customer_id"].value_counts().index[0]  # the most lines: a clear taste
    copy = _product_events(synth.events, [donor]).copy()
    copy = copy[copy["product_id"].notna()]
    copy["customer_id"] = "brand-new"
    copy["event_id"] = [f"new-{i}" for i in range(len(copy))]
    events = pd.concat([_product_events(synth.events, [known]), copy], ignore_index=True)
    ids = pd.Index([known, "brand-new"], dtype="str")
    live = fitted.for_customers(events, ids, fitted.as_of_ + pd.Timedelta(hours=2))
    assert live.state_.als_customers.tolist() == [True, True]
    users = live.state_.user_factors
    np.testing.assert_array_equal(users[0], state.user_factors[cat.customer_codes([known])[0]])
    fitted_donor = state.user_factors[cat.customer_codes([donor])[0]]
    cosine = users[1] @ fitted_donor / np.linalg.norm(users[1]) / np.linalg.norm(fitted_donor)
    assert cosine > 0.99, cosine
    cand = personal(live.state_, np.array([1], np.int32), fitted._candidate_params())
    assert cand.has("als").sum() > 0  # similar customers' products are candidates now
    assert not live.recommend(["brand-new"], k=10).empty


def test_a_known_customers_factors_follow_their_views_after_the_cutoff(fitted, synth):
    # issue 17: a known customer who views products of a category their fitted factors
    # point away from gets factors refolded from all their interactions, and those
    # products enter their "similar customers" candidates (before: the snapshot's factors
    # until the next refit); a known customer with nothing new keeps theirs exactly
    from training.recs.candidates import personal

    cat, state = fitted.catalogue_, fitted.state_
    active = np.flatnonzero(state.active)
    code, other = int(active[7]), int(active[8])
    who, still = str(cat.customer_ids[code]), str(cat.customer_ids[other])
    scores = state.item_factors @ state.user_factors[code]
    far = int(pd.Series(scores).groupby(cat.item_category).mean().idxmin())
    items = np.flatnonzero(cat.item_category == far)
    items = items[np.argsort(scores[items])][:5]  # that category's farthest products
    at = fitted.as_of_ + pd.Timedelta(hours=1)
    views = pd.DataFrame(
        {
            "event_id": [f"view-{i}" for i in range(10)],
            "customer_id": who,
            "ts": [at + pd.Timedelta(minutes=i) for i in range(10)],
            "channel": "web",
            "event_type": "view",
            "product_id": [str(p) for p in cat.item_ids[items]] * 2,
        }
    )
    views = views.reindex(columns=synth.events.columns).astype(synth.events.dtypes.to_dict())
    events = pd.concat([_product_events(synth.events, [who, still]), views], ignore_index=True)
    ids = pd.Index([who, still], dtype="str")
    live = fitted.for_customers(events, ids, at + pd.Timedelta(hours=1))
    users = live.state_.user_factors
    np.testing.assert_array_equal(users[1], state.user_factors[other])

    def cosine(user: np.ndarray) -> float:
        viewed = state.item_factors[items]
        return float((viewed @ user / np.linalg.norm(viewed, axis=1)).mean() / np.linalg.norm(user))

    assert cosine(state.user_factors[code]) < 0 < cosine(users[0])
    params = fitted._candidate_params()
    before = personal(state, np.array([code], np.int32), params)
    after = personal(live.state_, np.array([0], np.int32), params)
    als_before, als_after = before.item[before.has("als")], after.item[after.has("als")]
    assert not np.isin(items, als_before).any()
    assert np.isin(items, als_after).sum() >= 3
    in_far = [(cat.item_category[als] == far).sum() for als in (als_before, als_after)]
    assert in_far[1] > in_far[0] + 3, in_far
