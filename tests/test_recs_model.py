"""The recommender and its baselines on small synthetic data with planted structure.

Every recommender runs the same interface tests (:class:`RecommenderContract`; the
estimator contract all models share is tests/test_model_contract.py); the
two-stage model must beat each baseline, recommend planted staples as "buy again", give
cold-start customers their store's popularity, and reproduce itself from a seed.
The synthetic events carry the true person as customer_id (identity resolution has its
own tests), so the planted truth lines up with the ids.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from compare_scores import assert_same_answers

from features.sources.synthetic import generate
from training.recs import (
    REASONS,
    ALSRecommender,
    BuyAgainRecommender,
    History,
    Holdout,
    PopularityRecommender,
    Recommender,
    evaluate,
)

HORIZON = 14
FAST = {"iterations": 8, "factors": 32}


@pytest.fixture(scope="module")
def synth():
    data = generate(n_customers=2000, days=180, seed=11)
    data.events["customer_id"] = data.truth["event_person"]["person_id"].to_numpy()
    return data


@pytest.fixture(scope="module")
def history(synth) -> History:
    return History.from_frames(synth.events, synth.customers, synth.products, synth.stores)


@pytest.fixture(scope="module")
def cutoff(history) -> pd.Timestamp:
    return history.last_ts.floor("D") + pd.Timedelta(days=1) - pd.Timedelta(days=HORIZON)


@pytest.fixture(scope="module")
def holdout(history, cutoff) -> Holdout:
    return Holdout.build(history, cutoff, HORIZON)


@pytest.fixture(scope="module")
def fitted(history, cutoff) -> dict:
    models = {
        "model": Recommender(random_state=0, **FAST),
        "popularity": PopularityRecommender(),
        "buy_again": BuyAgainRecommender(),
        "als": ALSRecommender(random_state=0, **FAST),
    }
    return {name: m.fit(history, as_of=cutoff) for name, m in models.items()}


@pytest.fixture(scope="module")
def evaluations(fitted, holdout) -> dict:
    return {name: evaluate(m, holdout) for name, m in fitted.items()}


# ----------------------------------------------------------------------------- contract


class RecommenderContract:
    """What every recommender guarantees; subclasses name the fitted model to check."""

    key: str

    @pytest.fixture
    def model(self, fitted):
        return fitted[self.key]

    @pytest.fixture
    def some_ids(self, holdout, synth):
        known = list(holdout.customer_ids[:40])
        never_seen = ["NOBODY-1", "NOBODY-2"]
        return known + never_seen

    def test_frame_shape_and_order(self, model, some_ids):
        recs = model.recommend(some_ids, k=7)
        assert list(recs.columns) == ["customer_id", "rank", "product_id", "score", "reason"]
        assert recs["customer_id"].unique().tolist() == some_ids  # request order
        assert recs.groupby("customer_id").size().eq(7).all()  # cold ones included
        assert recs["rank"].tolist() == list(range(1, 8)) * len(some_ids)
        assert not recs.duplicated(["customer_id", "product_id"]).any()
        assert recs["score"].dtype == np.float32
        diffs = recs.groupby("customer_id")["score"].diff().dropna()
        assert (diffs <= 0).all()
        assert set(recs["reason"].astype(str)) <= set(REASONS)

    def test_batch_equals_one_by_one(self, model, some_ids):
        # issue 15: within the scores' tolerance (ALS products round by block)
        batch = model.recommend(some_ids, k=10)
        single = pd.concat([model.recommend([c], k=10) for c in some_ids], ignore_index=True)
        assert_same_answers(batch, single)

    def test_chunks_do_not_change_results(self, model, some_ids, monkeypatch):
        import training.recs.base

        pairs = model.recommend(some_ids, k=3).groupby("customer_id").head(1)
        pairs = pairs[["customer_id", "product_id"]]
        whole = model.recommend(some_ids, k=6, exclude=pairs)
        monkeypatch.setattr(training.recs.base, "CHUNK", 5)
        assert_same_answers(model.recommend(some_ids, k=6, exclude=pairs), whole)  # issue 15

    def test_exclusions(self, model, some_ids, history):
        base = model.recommend(some_ids, k=5)
        top = base.groupby("customer_id").head(1)
        pairs = top[["customer_id", "product_id"]]
        recs = model.recommend(some_ids, k=5, exclude=pairs)
        merged = recs.merge(pairs, on=["customer_id", "product_id"])
        assert merged.empty
        everywhere = base["product_id"].iloc[0]
        dropped = model.recommend(some_ids, k=5, exclude=[everywhere])
        assert everywhere not in set(dropped["product_id"])
        bought = model.recommend(some_ids, k=10, exclude="purchased")
        assert not (bought["reason"] == "buy again").any()

    def test_bad_arguments(self, model):
        with pytest.raises(ValueError, match="k must be"):
            model.recommend(["x"], k=0)
        with pytest.raises(ValueError, match="unknown channel"):
            model.recommend(["x"], context={"channel": "telepathy"})


class TestModelContract(RecommenderContract):
    key = "model"


class TestPopularityContract(RecommenderContract):
    key = "popularity"


class TestBuyAgainContract(RecommenderContract):
    key = "buy_again"


class TestALSContract(RecommenderContract):
    key = "als"


# ----------------------------------------------------------------------------- quality


def test_two_stage_beats_every_baseline(evaluations):
    model = evaluations["model"]
    for name in ("popularity", "buy_again", "als"):
        base = evaluations[name]
        assert model.overall["ndcg"] > base.overall["ndcg"], name
        assert model.overall["map"] > base.overall["map"], name
    # and it finds new products better than the repeat-purchase baseline can
    assert model.new_items["ndcg"] > evaluations["buy_again"].new_items["ndcg"]
    # ALS alone picks up the planted category tastes: new products beyond popularity
    als, pop = evaluations["als"].new_items, evaluations["popularity"].new_items
    assert als["ndcg"] > pop["ndcg"]
    assert model.n_customers > 200


def test_metrics_by_k_rise_with_k(evaluations):
    by_k = evaluations["model"].by_k
    assert by_k["k"].tolist() == list(range(1, 21))
    assert by_k["recall"].is_monotonic_increasing
    assert by_k["hit_rate"].is_monotonic_increasing


def test_planted_staples_come_back_as_buy_again(fitted, synth, history, cutoff):
    """Staples a customer already bought on several days are in their top 10, as "buy
    again"; nothing they never bought is labelled so."""
    model = fitted["model"]
    cat = history.catalogue
    rows = history.before(cutoff, 365)
    rows = rows[history.event_type[rows] == 0]  # purchases
    bought = pd.DataFrame(
        {
            "customer_id": cat.customer_ids[history.customer[rows]],
            "product_id": cat.item_ids[history.item[rows]],
            "day": history.ts[rows] // 86_400,
        }
    )
    days = bought.drop_duplicates().groupby(["customer_id", "product_id"]).size()
    habitual = days[days >= 3].reset_index()[["customer_id", "product_id"]]
    habitual = habitual.merge(synth.truth["staples"], on=["customer_id", "product_id"])
    recs = model.recommend(habitual["customer_id"].unique(), k=10)
    found = habitual.merge(recs, on=["customer_id", "product_id"])
    assert len(habitual) > 100
    assert len(found) > 0.9 * len(habitual)
    assert (found["reason"] == "buy again").all()
    ever = bought[["customer_id", "product_id"]].drop_duplicates()
    never = recs.merge(ever, on=["customer_id", "product_id"], how="left", indicator=True)
    assert not (never.loc[never["_merge"] == "left_only", "reason"] == "buy again").any()


def test_cold_start_gets_segment_popularity(fitted, synth):
    model = fitted["model"]
    state, cat = model.state_, model.catalogue_
    store_code = int(np.argmax(state.segment_totals["store"]))
    store_id = cat.store_ids[store_code]
    expected = list(cat.item_ids[state.segment_top["store"][0][store_code][:5]])
    recs = model.recommend(["NEW-CUSTOMER"], k=5, context={"store_id": store_id})
    assert recs["product_id"].tolist() == expected
    assert (recs["reason"] == "popular in your store").all()
    # nothing known at all: the overall ("trending") list
    anon = model.recommend(["NEW-CUSTOMER"], k=5)
    assert anon["product_id"].tolist() == list(cat.item_ids[state.trending[:5]])
    assert (anon["reason"] == "trending").all()
    # a customers-table customer with no events gets the home store's list
    customers = synth.customers
    silent = customers[~customers["customer_id"].isin(cat.customer_ids[state.active])]
    silent = silent[silent["home_store_id"].notna()].head(1)
    if len(silent):
        home = cat.store_codes(silent["home_store_id"])[0]
        recs = model.recommend(silent["customer_id"], k=3)
        assert recs["product_id"].tolist() == list(
            cat.item_ids[state.segment_top["store"][0][home][:3]]
        )


def test_context_channel_changes_cold_lists_only_where_it_should(fitted):
    model = fitted["model"]
    web = model.recommend(["NEW"], k=5, context={"channel": "web"})
    assert (web["reason"] == "popular on your channel").all()
    frame = pd.DataFrame({"customer_id": ["NEW"], "channel": ["web"]})
    pd.testing.assert_frame_equal(model.recommend(["NEW"], k=5, context=frame), web)


def test_same_seed_same_metrics_and_no_peeking_after_the_cutoff(synth, cutoff, evaluations):
    """Refit from a log whose events after the cutoff are scrambled: same seed, same data
    before the cutoff -> the very same metrics (reproducible, and nothing after T is read)."""
    events = synth.events.copy()
    after = (events["ts"] >= cutoff).to_numpy()
    rng = np.random.default_rng(0)
    products = events["product_id"].to_numpy(copy=True)
    products[after] = rng.permutation(products[after])
    events["product_id"] = products
    scrambled = History.from_frames(events, synth.customers, synth.products, synth.stores)
    refit = Recommender(random_state=0, **FAST).fit(scrambled, as_of=cutoff)
    original = History.from_frames(synth.events, synth.customers, synth.products, synth.stores)
    again = evaluate(refit, Holdout.build(original, cutoff, HORIZON))
    assert again.overall == evaluations["model"].overall
    assert again.new_items == evaluations["model"].new_items


def test_fitted_state_and_feature_importance(fitted, cutoff):
    model = fitted["model"]
    assert model.as_of_ == cutoff
    assert model.valid_cutoff_ == cutoff - pd.Timedelta(days=HORIZON)
    assert all(t + pd.Timedelta(days=HORIZON) <= model.valid_cutoff_ for t in model.train_cutoffs_)
    assert model.state_.user_factors.dtype == np.float32
    imp = model.feature_importance()
    assert set(imp.index) == set(model.features_)
    assert imp.iloc[0] > 0


def test_batch_threads_give_the_one_thread_rows(fitted, history, monkeypatch):
    # batch scoring builds ranker features in row blocks on several threads and ranks
    # with LightGBM on all cores (issue: batch scoring speed): the same rows as one thread
    import training.recs.ranker_features as rf

    model = fitted["model"]
    codes = np.arange(history.catalogue.n_customers, dtype=np.int32)
    none = np.full(len(codes), -1, np.int32)
    args = (codes, none, none, 10, np.zeros(0, np.int64))
    one = model.recommend_codes(*args, num_threads=1)
    monkeypatch.setattr(rf, "PARALLEL_ROWS", 1)
    many = model.recommend_codes(*args, num_threads=3)
    for a, b in zip(one, many, strict=True):  # one code path run twice: exactly
        np.testing.assert_array_equal(a, b)
