"""Issue 16: the ALS search runs on the validation window only, picks the candidate with
the best new-item NDCG@10 and rejects unknown parameters; the novelty features count right."""

from __future__ import annotations

import pandas as pd
import pytest

from features.sources.synthetic import generate
from training.recs.als_search import search_als
from training.recs.data import History
from training.recs.model import Recommender, default_cutoff

pytestmark = pytest.mark.slow

CANDIDATES = ({}, {"bm25_k1": 100.0, "bm25_b": 0.8, "alpha": 1.0}, {"factors": 8})


@pytest.fixture(scope="module")
def synth():
    data = generate(n_customers=600, days=120, seed=11)
    data.events["customer_id"] = data.truth["event_person"]["person_id"].to_numpy()
    return data


def _history(data, events: pd.DataFrame) -> History:
    return History.from_frames(events, data.customers, data.products, data.stores)


def _base() -> dict:
    return Recommender(factors=16, iterations=4, random_state=3).get_params()


def test_search_scores_every_candidate_and_keeps_the_best_new_item_ndcg(synth):
    history = _history(synth, synth.events)
    valid = default_cutoff(history) - pd.Timedelta(days=28)
    search = search_als(history, valid, 14, _base(), CANDIDATES)
    assert len(search.rows) == len(CANDIDATES)
    new = [row["valid_new_ndcg_at_10"] for row in search.rows]
    assert all(0.0 <= x <= 1.0 for x in new)
    assert search.best == search.rows[new.index(max(new))]["params"]
    assert search.rows[2]["params"]["factors"] == 8
    assert search.as_json()["valid_cutoff"] == str(valid)
    line = search.summary()  # what the job prints
    assert f"valid_new_ndcg_at_10 {max(new):.4f}" in line and line.endswith(f"best of {len(new)})")


def test_search_reads_nothing_after_the_validation_window(synth):
    history = _history(synth, synth.events)
    valid = default_cutoff(history) - pd.Timedelta(days=28)
    end = valid + pd.Timedelta(days=14)
    ts = pd.to_datetime(synth.events["ts"], utc=True)
    cut = _history(synth, synth.events[ts < end])
    full = search_als(history, valid, 14, _base(), CANDIDATES)
    short = search_als(cut, valid, 14, _base(), CANDIDATES)
    for a, b in zip(full.rows, short.rows, strict=True):
        assert a["valid_ndcg_at_10"] == pytest.approx(b["valid_ndcg_at_10"], abs=1e-6)
        assert a["valid_new_ndcg_at_10"] == pytest.approx(b["valid_new_ndcg_at_10"], abs=1e-6)


def test_unknown_parameter_is_named(synth):
    history = _history(synth, synth.events)
    valid = default_cutoff(history) - pd.Timedelta(days=28)
    with pytest.raises(ValueError, match="learning_rate"):
        search_als(history, valid, 14, _base(), [{"learning_rate": 0.1}])
    with pytest.raises(ValueError, match="at least one"):
        search_als(history, valid, 14, _base(), [])


def test_adoption_features_match_a_pandas_count(synth):
    """Issue 16: adopters_28d = customers whose first purchase of a product (in the
    lookback) falls in the popularity window; checked against a plain pandas count."""
    from training.recs.cutoff_state import StateParams, build_cutoff_state

    history = _history(synth, synth.events)
    as_of = default_cutoff(history) - pd.Timedelta(days=14)
    params = StateParams(lookback_days=90, popularity_days=28)
    state = build_cutoff_state(history, as_of, params, None, 0)
    ev = synth.events.assign(ts=pd.to_datetime(synth.events["ts"], utc=True))
    ev = ev[
        (ev["event_type"] == "purchase")
        & ev["product_id"].notna()
        & (ev["ts"] < as_of)
        & (ev["ts"] >= as_of - pd.Timedelta(days=90))
    ]
    first = ev.groupby(["customer_id", "product_id"])["ts"].min()
    new = first[first >= as_of - pd.Timedelta(days=28)]
    expected = new.groupby(level="product_id").size()
    codes = history.catalogue.item_codes(expected.index.to_numpy())
    assert (codes >= 0).all() and len(expected) > 10
    assert state.adopters[codes].tolist() == expected.astype(float).tolist()
    assert state.adopters.sum() == len(new)
    share = state.adoption_share[~pd.isna(state.adoption_share)]
    assert ((share >= 0) & (share <= 1)).all() and (share < 1).any()
