"""The recommender's parts on tiny hand-made data: weights, BM25, ALS, keyed tables,
customer-by-product history and the repurchase-cycle features."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from compare_scores import assert_same_lists

from training.recs.als import ALSParams, fit_als, pair_scores, top_n
from training.recs.candidates import Candidates, CandidateTable, resolve_customers
from training.recs.cutoff_state import StateParams, build_cutoff_state
from training.recs.data import History
from training.recs.interactions import bm25, event_weights, interaction_matrix
from training.recs.product_tables import customer_item_table, item_table, windows_for
from training.recs.ranker_features import FEATURES, feature_matrix
from training.recs.tables import PairTable, top_per_row


def _events(rows: list[tuple[str, str, str, str]]) -> pd.DataFrame:
    """(customer, ts, event_type, product) rows as contract events on the store channel."""
    c, ts, et, p = zip(*rows, strict=True)
    return pd.DataFrame(
        {
            "customer_id": list(c),
            "ts": pd.to_datetime(list(ts), utc=True),
            "channel": "store",
            "event_type": list(et),
            "product_id": list(p),
            "store_id": "s1",
        }
    )


@pytest.fixture
def tiny() -> History:
    return History.from_frames(
        _events(
            [
                ("a", "2025-01-01", "purchase", "milk"),
                ("a", "2025-01-01", "purchase", "milk"),  # same day: one purchase day
                ("a", "2025-01-11", "purchase", "milk"),
                ("a", "2025-01-21", "purchase", "milk"),
                ("a", "2025-01-21", "view", "tea"),
                ("a", "2025-01-22", "add_to_cart", "tea"),
                ("b", "2025-01-20", "purchase", "tea"),
                ("b", "2025-02-10", "purchase", "milk"),  # after the cutoff below
            ]
        )
    )


def test_interactions_weigh_purchase_over_cart_over_view(tiny):
    m = interaction_matrix(tiny, "2025-02-01", weights={"purchase": 1, "add_to_cart": 0.5})
    cat = tiny.catalogue
    a, b = cat.customer_codes(["a", "b"])
    milk, tea = cat.item_codes(["milk", "tea"])
    assert m.dtype == np.float32
    assert m[a, milk] == 4.0  # four purchase lines
    assert m[a, tea] == 0.5  # view weighs 0 here, cart 0.5
    assert m[b, tea] == 1.0
    assert m[b, milk] == 0.0  # 2025-02-10 is after the cutoff
    with pytest.raises(ValueError, match="unknown event types"):
        event_weights({"buy": 1.0})


def test_bm25_matches_implicit_when_every_product_is_used():
    from implicit.nearest_neighbours import bm25_weight

    rng = np.random.default_rng(0)
    dense = (rng.random((30, 12)) < 0.4) * rng.integers(1, 5, (30, 12))
    dense[0, :] = 1  # every product has an interaction
    m = sp.csr_matrix(dense.astype(np.float32))
    ours = bm25(m, k1=100, b=0.8)
    theirs = bm25_weight(m.T, K1=100, B=0.8).T.tocsr()
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours.toarray(), theirs.toarray(), rtol=1e-5)


def test_als_recovers_two_blocks_and_top_n_skips_excluded():
    # two groups of customers, each buying only its own half of the catalogue
    n_users, n_items = 40, 20
    rng = np.random.default_rng(1)
    group = np.arange(n_users) % 2
    dense = np.zeros((n_users, n_items), np.float32)
    for g in (0, 1):
        block = (rng.random((n_users, n_items // 2)) < 0.5) & (group[:, None] == g)
        dense[:, g * 10 : g * 10 + 10] += block
    user_f, item_f = fit_als(sp.csr_matrix(dense), ALSParams(factors=4, iterations=20), 0)
    assert user_f.dtype == np.float32 and item_f.dtype == np.float32
    items, scores = top_n(user_f, item_f, np.arange(n_users), 5)
    assert ((items // 10) == group[:, None]).all()  # own block only
    assert (np.diff(scores, axis=1) <= 0).all()
    exclude = sp.csr_matrix(dense)
    items_x, _ = top_n(user_f, item_f, np.arange(n_users), 3, exclude=exclude)
    assert not exclude[np.arange(n_users)[:, None], items_x].toarray().any()
    np.testing.assert_allclose(
        pair_scores(user_f, item_f, np.arange(n_users), items[:, 0]), scores[:, 0], rtol=1e-5
    )


def test_top_n_skips_what_implicit_skips_given_the_scipy_matrix():
    # issue 17: top_n hands implicit's topk a light view of the exclusion rows (scipy's
    # row indexing cost more than the top-k); the lists are bit for bit those of topk
    # given the matrix itself, ties (products with zero factors) and empty rows included
    from implicit.cpu.topk import topk

    rng = np.random.default_rng(4)
    user_f = rng.normal(size=(400, 16)).astype(np.float32)
    item_f = rng.normal(size=(300, 16)).astype(np.float32)
    item_f[40:70] = 0
    users = rng.integers(0, 400, 250)
    exclude = sp.random(250, 300, density=0.1, format="csr", random_state=3, dtype=np.float32)
    nothing = sp.diags((np.arange(250) != 7).astype(np.float32))  # customer 7 bought nothing
    exclude = sp.csr_matrix(nothing @ exclude)
    exclude.eliminate_zeros()
    assert exclude[7].nnz == 0
    items, scores = top_n(user_f, item_f, users, 40, exclude=exclude, num_threads=2)
    want, want_scores = topk(item_f, user_f[users], 40, filter_query_items=exclude)
    skipped = want_scores == -np.finfo(np.float32).max
    assert not skipped.any()  # 300 products, at most ~45 excluded: every slot filled
    np.testing.assert_array_equal(items, want)
    np.testing.assert_array_equal(scores, want_scores)
    assert not exclude[np.arange(250)[:, None], items].toarray().any()


def test_top_n_batch_equals_one_by_one():
    # issue 15: a batch and one-by-one calls agree within float32 rounding (a BLAS
    # product rounds a user's scores by the shape of its block), not bit for bit;
    # unit-normal factors of 64 dims round a dot product by up to ~1e-4
    rng = np.random.default_rng(2)
    user_f = rng.normal(size=(250, 64)).astype(np.float32)
    item_f = rng.normal(size=(3000, 64)).astype(np.float32)
    users = np.arange(250)
    items, scores = top_n(user_f, item_f, users, 10)
    some = np.array([0, 17, 99, 100, 101, 199, 200, 249])  # block edges: 100 users
    alone = [top_n(user_f, item_f, users[u : u + 1], 10) for u in some]
    assert_same_lists(
        items[some],
        scores[some],
        np.vstack([a[0] for a in alone]),
        np.vstack([a[1] for a in alone]),
    )


def _top_n_by_brute_force(user_f, item_f, users, n, exclude=None):
    """What top_n must return: every item scored with pair_scores, excluded ones dropped,
    best first, ties to the lower item code, -1 / -inf past the last allowed item."""
    n_items = len(item_f)
    every = np.arange(n_items)
    items = np.full((len(users), n), -1, np.int32)
    scores = np.full((len(users), n), -np.inf, np.float32)
    for row, u in enumerate(users):
        s = pair_scores(user_f, item_f, np.full(n_items, u), every)
        if exclude is not None:
            s[exclude[row].indices] = -np.inf
        order = np.lexsort((every, -s))[:n]
        ok = np.isfinite(s[order])
        items[row, : ok.sum()], scores[row, : ok.sum()] = order[ok], s[order][ok]
    return items, scores


def test_top_n_equals_brute_force_with_ties_zero_factors_and_exclusions():
    # ties (duplicated items), items nobody bought (zero factors), a user with zero
    # factors (every score 0), one who bought nearly everything (fewer than n left) and
    # n past the catalogue: the brute-force lists, within float32 rounding (issue 15;
    # unit-normal factors round a dot product by up to d * eps * |u| |v|, ~1e-5 here)
    rng = np.random.default_rng(3)
    n_users, n_items = 60, 2000
    item_f = rng.normal(size=(n_items, 16)).astype(np.float32)
    item_f[200:260] = item_f[7]  # 61 identical items: exact ties around any cut
    item_f[1500:] = 0.0  # never bought
    user_f = rng.normal(size=(n_users, 16)).astype(np.float32)
    user_f[5] = 0.0
    user_f[6] = -item_f[7]  # the tied items are this user's worst non-zero ones
    user_f[8] = item_f[7]  # ... and this one's best
    dense = rng.random((n_users, n_items)) < 0.05
    dense[9, : n_items - 5] = True  # five items left, fewer than n
    exclude = sp.csr_matrix(dense.astype(np.float32))
    users = np.arange(n_users)
    for n, ex in (
        (10, None),
        (10, exclude),
        (70, exclude),
        (n_items, None),
        (n_items + 5, exclude),
    ):
        got = top_n(user_f, item_f, users, n, exclude=ex)
        want = _top_n_by_brute_force(user_f, item_f, users, min(n, n_items), ex)
        assert_same_lists(*got, *want, tol=1e-4)
        assert (got[0][9] >= 0).sum() == (5 if ex is not None else min(n, n_items))
    items, scores = top_n(user_f, item_f, users[5:6], 10)
    assert (scores == 0).all() and len(set(items[0])) == 10  # all tied at 0: any ten


def test_pair_table_dense_lookups_equal_searched_ones(monkeypatch):
    import pickle

    from training.recs import tables

    rng = np.random.default_rng(3)
    t = PairTable.count(rng.integers(0, 40, 3000), rng.integers(0, 25, 3000), n_cols=25)
    rows = rng.integers(-2, 45, 5000)  # unknown (-1, -2) and rows past the table
    cols = rng.integers(-1, 25, 5000)
    for missing in (0.0, np.nan):
        searched = t.get("count", rows, cols, missing)
        monkeypatch.setattr(tables, "DENSE_FROM", 1)
        dense = t.get("count", rows, cols, missing)
        monkeypatch.setattr(tables, "DENSE_FROM", 10**9)
        np.testing.assert_array_equal(dense, searched)
    assert len(t._dense) == 2  # one copy per missing value, NaN included
    copy = pickle.loads(pickle.dumps(t))
    assert copy._dense == {} and np.array_equal(copy.keys, t.keys)
    np.testing.assert_array_equal(
        copy.get("count", rows, cols, 0.0), t.get("count", rows, cols, 0.0)
    )
    monkeypatch.setattr(tables, "DENSE_MAX_CELLS", 10)  # too many cells: searched instead
    assert copy._dense_column("count", 0.0) is None


def test_subsets_of_pair_and_candidate_tables_keep_their_rows_renumbered():
    """What a live ranking keeps of some customers (issue 17): each kept row's pairs and
    candidates, under its position among the kept rows."""
    rng = np.random.default_rng(3)
    rows, cols = rng.integers(0, 40, 300), rng.integers(0, 25, 300)
    table = PairTable.count(rows, cols, 25)
    kept = np.sort(rng.choice(40, 9, replace=False))
    part = table.of_rows(kept)
    assert np.all(np.diff(part.keys) > 0)
    grid = np.arange(25)
    for new, old in enumerate(kept):
        np.testing.assert_array_equal(
            part.get("count", np.full(25, new), grid, 0.0),
            table.get("count", np.full(25, old), grid, 0.0),
        )
    assert len(part) == np.isin(table.keys // 25, kept).sum()
    counts = rng.integers(0, 5, 40)
    indptr = np.concatenate([[0], np.cumsum(counts)])
    n = int(indptr[-1])
    cand = CandidateTable(
        indptr, rng.integers(0, 99, n), rng.integers(0, 8, n), rng.integers(-1, 50, n)
    )
    sub = cand.of_customers(kept)
    for new, old in enumerate(kept):
        mine = slice(sub.indptr[new], sub.indptr[new + 1])
        theirs = slice(indptr[old], indptr[old + 1])
        for name in ("item", "sources", "als_rank"):
            np.testing.assert_array_equal(getattr(sub, name)[mine], getattr(cand, name)[theirs])


def test_pair_table_and_top_per_row():
    t = PairTable.count(np.array([2, 0, 2, 2]), np.array([5, 1, 5, 3]), n_cols=10)
    assert t.keys.tolist() == [1, 23, 25]
    assert t.get("count", np.array([2, 2, 0, -1]), np.array([5, 4, 1, 1]), 0).tolist() == [
        2,
        0,
        1,
        0,
    ]
    owner, at = t.slices(np.array([2, 1, 0]))
    assert owner.tolist() == [0, 0, 2]
    assert t.col_of(at).tolist() == [3, 5, 1]
    cols, scores = top_per_row(
        np.array([0, 0, 0, 1]), np.array([4, 2, 7, 1]), np.array([1.0, 3.0, 3.0, 5.0]), 3, 2
    )
    assert cols.tolist() == [[2, 7], [1, -1], [-1, -1]]  # tie on 3.0: lower column first
    assert scores[0].tolist() == [3.0, 3.0]


def test_customer_item_history_and_repurchase_cycle_by_hand(tiny):
    cat = tiny.catalogue
    as_of = pd.Timestamp("2025-02-01", tz="UTC")
    rows = tiny.before(as_of, 365)
    table = customer_item_table(tiny, rows, as_of, windows_for(365))
    a, b = cat.customer_codes(["a", "b"])
    milk, tea = cat.item_codes(["milk", "tea"])
    get = lambda name, c, i: table.get(name, np.array([c]), np.array([i]), -1)[0]  # noqa: E731
    assert get("times_bought", a, milk) == 4
    assert get("days_bought", a, milk) == 3
    assert get("days_since_last_bought", a, milk) == pytest.approx(11.0)
    assert get("first_day_ago", a, milk) == pytest.approx(31.0)
    assert get("bought_28d", a, milk) == 2
    assert get("decayed", a, milk) == pytest.approx(
        0.5 ** (31 / 30) * 2 + 0.5 ** (21 / 30) + 0.5 ** (11 / 30), rel=1e-5
    )
    assert get("times_bought", a, tea) == -1  # viewed and carted, never bought
    assert get("times_bought", b, milk) == -1  # bought after the cutoff
    items = item_table(tiny, as_of, windows_for(365))
    assert items["orders_30d"][milk] == 2  # Jan 11 and Jan 21 lines (Jan 1 is 31 days ago)
    assert items["buyers"][milk] == 1 and items["buyers"][tea] == 1
    assert items["repurchase_rate"][milk] == 1.0 and items["repurchase_rate"][tea] == 0.0
    assert items["views_7d"].sum() == 0 and items["views_30d"][tea] == 1

    state = build_cutoff_state(tiny, as_of, StateParams(), None, 0)
    cust = resolve_customers(state, cat, np.array([a, a], np.int32))
    cand = Candidates(
        pos=np.array([0, 1], np.int32),
        item=np.array([milk, tea], np.int32),
        sources=np.array([2, 1], np.uint8),
        als_rank=np.array([-1, 0], np.int16),
    )
    X = pd.DataFrame(feature_matrix(state, cat, cust, cand), columns=FEATURES)
    assert X.loc[0, "repurchase_gap"] == pytest.approx(10.0)  # (31 - 11) / (3 - 1)
    assert X.loc[0, "gap_ratio"] == pytest.approx(1.1)  # 11 days since / 10-day cycle
    assert X.loc[0, "trip_share"] == pytest.approx(1.0)  # milk on all 3 purchase days
    assert X.loc[1, "days_since_last_bought"] == 365  # never: the lookback
    assert np.isnan(X.loc[1, "repurchase_gap"])
    assert X.loc[0, "src_buy_again"] == 1 and X.loc[1, "src_als"] == 1
    assert X.loc[0, "category_share"] == 0  # no product categories known


def test_top_k_orders_like_lexsort_with_duplicates_ties_and_signed_zeros():
    # _top_k sorts one packed int64 key instead of two np.lexsort calls (batch scoring
    # speed); this is the lexsort definition it must keep, on rows full of ties
    from training.recs.base import _top_k

    def by_lexsort(pos, item, score, reason, excluded, n_items, k):
        key = pos.astype(np.int64) * n_items + item
        keep = ~np.isin(key, excluded)
        pos, item, score, reason, key = pos[keep], item[keep], score[keep], reason[keep], key[keep]
        order = np.lexsort((-score, key))
        order = order[np.r_[True, key[order][1:] != key[order][:-1]]]
        pos, item, score, reason = pos[order], item[order], score[order], reason[order]
        order = np.lexsort((item, -score, pos))
        pos, item, score, reason = pos[order], item[order], score[order], reason[order]
        rank = np.arange(len(pos)) - np.searchsorted(pos, pos, side="left")
        keep = rank < k
        return pos[keep], item[keep], score[keep], reason[keep], rank[keep]

    rng = np.random.default_rng(6)
    values = np.array([-np.inf, -1.5, -0.0, 0.0, 0.25, 3.0, np.inf], np.float32)
    for trial in range(200):
        n, n_items = int(rng.integers(1, 300)), int(rng.integers(1, 40))
        pos, item = rng.integers(0, 15, n), rng.integers(0, n_items, n).astype(np.int32)
        score = rng.choice(values, n) if trial % 2 else rng.normal(size=n).round(1)
        reason = rng.integers(0, 6, n).astype(np.int8)
        excluded = np.unique(rng.integers(0, 15 * n_items, int(rng.integers(0, 8))))
        k = int(rng.integers(1, 12))
        args = (pos, item, score.astype(np.float32), reason, excluded, n_items, k)
        for got, want in zip(_top_k(*args), by_lexsort(*args), strict=True):
            np.testing.assert_array_equal(got, want)


def test_catalogue_positions_are_pandas_get_indexer_with_missing_ids_unknown():
    # issue 17: the catalogue's id lookups run on Arrow (6x faster on a live refresh);
    # they answer what pandas' get_indexer did: the position, -1 unknown or missing
    from training.recs.data import positions

    index = pd.Index(["P2", "P10", "P1"], dtype="str")
    ids = pd.Series(["P1", None, "P3", "P10", "P1", ""], dtype="str")
    got = positions(index, ids)
    assert got.tolist() == [2, -1, -1, 1, 2, -1]
    assert got.tolist() == index.get_indexer(pd.Index(ids, dtype="str")).tolist()
    assert got.dtype == np.int32 and got.flags.writeable
    assert positions(index, []).tolist() == [] and positions(index[:0], ["P1"]).tolist() == [-1]
