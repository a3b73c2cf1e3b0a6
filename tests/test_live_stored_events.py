"""issue 17 (memory): the online state's encoded store events and event-id set give back
exactly what they were given."""

from __future__ import annotations

import itertools
import os

import numpy as np
import pandas as pd
import pytest

from features.contract.schema import CHANNELS, EVENT_TYPES, with_every_column
from serving.live.id_set import EventIdSet, GrowingEventIdSet, fingerprints, share
from serving.live.stored_events import AS_CATEGORIES, StoredEvents, encode
from training.recs.data import BUILDER_COLUMNS


def events(n: int, seed: int, sub_second: bool = False) -> pd.DataFrame:
    """``n`` contract events of a few customers, with missing values in every optional
    column and (``sub_second``) timestamps off whole seconds."""
    rng = np.random.default_rng(seed)
    ts = pd.Timestamp("2025-06-01", tz="UTC") + pd.to_timedelta(
        rng.integers(0, 300 * 86_400, n), unit="s"
    )
    if sub_second:
        ts = ts + pd.to_timedelta(rng.integers(0, 1_000_000, n), unit="us")

    def maybe(values: np.ndarray) -> list:
        return [v if rng.random() < 0.6 else None for v in values]

    frame = pd.DataFrame(
        {
            "customer_id": rng.choice([f"C{i:03d}" for i in range(9)], n),
            "ts": ts,
            "channel": rng.choice(CHANNELS, n),
            "event_type": rng.choice(EVENT_TYPES, n),
            "order_id": maybe(rng.choice([f"O{i}" for i in range(40)], n)),
            "product_id": maybe(rng.choice([f"P{i}" for i in range(300)], n)),
            "store_id": maybe(rng.choice(["S1", "S2", "S3"], n)),
            "quantity": maybe(rng.integers(1, 4, n).astype(float)),
            "amount": maybe(rng.normal(20, 10, n).round(2)),
            "discount": maybe(rng.choice([0.0, 1.5, 2.25], n)),
            "campaign_id": maybe(rng.choice(["K1", "K2"], n)),
            "event_id": [f"e{seed}-{i}" for i in range(n)],
        }
    )
    return with_every_column(frame)


def by_customer(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` as the state slices it: the builders' columns, stably sorted by customer."""
    out = frame.sort_values("customer_id", kind="stable", ignore_index=True)
    return out[list(BUILDER_COLUMNS)]


def as_text(frame: pd.DataFrame) -> pd.DataFrame:
    """A refresh's events with their categorical ids as the text a store read gives."""
    out = frame.copy()
    for name in ("customer_id", *AS_CATEGORIES):
        assert isinstance(out[name].dtype, pd.CategoricalDtype)
        out[name] = out[name].astype("str")
    return out


@pytest.mark.parametrize("sub_second", [False, True])
def test_decoding_gives_back_the_frame(sub_second):
    frame = events(500, 1, sub_second)
    stored = StoredEvents.of_frame(frame)
    everyone = pd.Index(sorted(frame["customer_id"].unique()), dtype="str")
    pd.testing.assert_frame_equal(as_text(stored.of(everyone)), by_customer(frame))
    some = pd.Index(["C004", "nobody", "C001"], dtype="str")  # any order, unknown ids skipped
    expected = by_customer(frame[frame["customer_id"].isin(["C001", "C004"])])
    pd.testing.assert_frame_equal(as_text(stored.of(some)).sort_values("customer_id", kind="stable")
                                  .reset_index(drop=True), expected)  # fmt: skip
    assert stored.nbytes < frame.memory_usage(deep=True).sum() / 3
    assert stored._base.ts.itemsize == (8 if sub_second else 4)  # whole seconds: 32 bits


@pytest.mark.parametrize("mapped", [False, True])
@pytest.mark.parametrize("new_prefix", ["N", "B", "C0"])  # new customers after, before, among
def test_batches_and_added_events_merge_into_one_whole(new_prefix, mapped, tmp_path):
    first, second, later = events(300, 2), events(200, 3), events(50, 4, sub_second=True)
    new = later.index % 2 == 0  # some known customers, some new ones
    later.loc[new, "customer_id"] = later.loc[new, "customer_id"].str.replace("C", new_prefix)
    later.loc[3, "order_id"] = first["order_id"].dropna().iloc[0]  # an order of a stored one
    later.loc[5, "product_id"] = "P-NEW"  # a product the store lacks
    stored = StoredEvents([encode(first), encode(second)])
    if mapped:
        stored = stored.mapped(tmp_path)
        assert not stored._base.ts.flags.writeable and not list(tmp_path.iterdir())
    base = stored._base
    stored = stored.with_events(later.iloc[:20]).with_events(later.iloc[20:])  # two folds
    assert stored._base is base and stored.n_added == len(later)  # the store's rows kept
    whole = pd.concat([first, second, later], ignore_index=True)
    everyone = pd.Index(sorted(whole["customer_id"].unique()), dtype="str")
    pd.testing.assert_frame_equal(as_text(stored.of(everyone)), by_customer(whole))
    assert stored.event_ids.contains(whole["event_id"]).all()
    cut = pd.Timestamp("2026-03-01", tz="UTC")
    since = sorted(whole.loc[whole["ts"] >= cut, "customer_id"].unique())
    assert stored.customers_since(cut).tolist() == since


def test_no_events():
    stored = StoredEvents([])
    assert len(stored) == 0
    assert stored.of(pd.Index(["C1"], dtype="str")).columns.tolist() == list(BUILDER_COLUMNS)
    assert not stored.event_ids.contains(pd.Series(["e"])).any()


def test_missing_customer_or_column_is_refused():
    frame = events(10, 5)
    frame.loc[3, "customer_id"] = None
    with pytest.raises(ValueError, match="customer_id"):
        StoredEvents.of_frame(frame)
    with pytest.raises(ValueError, match="event_id"):
        StoredEvents.of_frame(events(10, 5).drop(columns="event_id"))


def test_id_set_answers_as_a_set_of_strings():
    ids = pd.Series([f"id-{i}" for i in range(10_000)])
    held = EventIdSet.of(ids[::2])
    asked = pd.concat([ids, pd.Series(["", "id-0 ", "ID-0"])], ignore_index=True)
    expected = asked.isin(set(ids[::2]))
    assert (held.contains(asked) == expected.to_numpy()).all()
    assert held.nbytes == 12 * len(held)


def test_id_set_tells_apart_ids_whose_first_64_bits_collide():
    hi, lo = fingerprints(pd.Series(["a", "b", "c"]))
    same_hi = np.array([hi[0], hi[0], hi[2]], np.uint64)  # as if "b" collided with "a"
    held = EventIdSet(same_hi, np.array([lo[0], lo[1] ^ 1, lo[2]], np.uint32))
    assert held.contains(pd.Series(["a", "b", "c", "d"])).tolist() == [True, False, True, False]
    with pytest.raises(ValueError, match="missing"):
        held.contains(pd.Series(["a", None]))


def test_id_set_union_holds_every_id_of_its_sets():
    ids = pd.Series([f"id-{i}" for i in range(5_000)])
    parts = [EventIdSet.of(ids[i::3]) for i in range(3)]
    whole = EventIdSet.union([parts[0], parts[2]])
    expected = ~ids.index.isin(range(1, 5_000, 3))
    assert (whole.contains(ids) == expected).all()
    hi, lo = fingerprints(pd.Series(["a", "b"]))
    a_hi, a_lo, b_lo = hi[:1], lo[:1], lo[1:]  # ids as if their first 64 bits were "a"'s
    held = EventIdSet.union([EventIdSet(a_hi, b_lo), EventIdSet(a_hi, a_lo)])
    held_not_a = EventIdSet.union([EventIdSet(a_hi, b_lo), EventIdSet(a_hi, b_lo ^ 1)])
    assert held.contains(pd.Series(["a"])).tolist() == [True]
    assert held_not_a.contains(pd.Series(["a"])).tolist() == [False]


@pytest.mark.parametrize("max_run", [1 << 18, 700])
def test_a_growing_id_set_answers_as_a_set_of_strings_after_every_batch(max_run):
    rng = np.random.default_rng(3)
    ids = pd.Series([f"ev-{i}" for i in rng.permutation(20_000)])
    sizes = np.concatenate([rng.integers(0, 400, 30), np.arange(300, 280, -1)])  # falling too
    grown, expected = GrowingEventIdSet(max_run=max_run), set()
    for start, stop in itertools.pairwise(np.concatenate([[0], np.cumsum(sizes)])):
        batch = ids.iloc[start:stop]
        assert not grown.contains(batch).any()
        grown.add(batch)
        expected |= set(batch)
        asked = pd.concat([ids.iloc[: stop + 200], pd.Series(["", "ev-1 "])])
        assert (grown.contains(asked) == asked.isin(expected).to_numpy()).all()
        assert len(grown) == len(expected)
        runs = [len(run) for run in grown._runs]  # merged as they double, up to max_run
        assert all(a > 2 * b or a + b > max_run for a, b in itertools.pairwise(runs))
        assert max(runs, default=0) <= max(max_run, max(sizes))
    assert grown.nbytes == 12 * len(grown)
    assert GrowingEventIdSet(ids[:10]).contains(ids[:12]).tolist() == [True] * 10 + [False] * 2


def test_a_growing_id_set_tells_apart_ids_whose_first_64_bits_collide():
    hi, lo = fingerprints(pd.Series(["a", "b", "c"]))
    grown = GrowingEventIdSet()
    grown._runs = [EventIdSet(np.array([hi[0], hi[0]], np.uint64), np.array([lo[1], lo[0]]))]
    assert grown.contains(pd.Series(["a", "b", "c"])).tolist() == [True, False, False]


@pytest.mark.parametrize("new_product", [False, True])
def test_more_events_take_the_stored_categories(new_product):
    """Issue 17: a refresh's live events join its stored ones as the same categoricals; a
    product the state lacks joins the categories (and stays: the next refresh finds it).
    The values are those of the two frames one after the other."""
    frame = events(400, 5)
    stored = StoredEvents.of_frame(frame.iloc[:300])
    more = frame.iloc[300:][list(BUILDER_COLUMNS)].reset_index(drop=True)
    more = more[more["customer_id"].isin(["C001", "C002", "C007"])].reset_index(drop=True)
    known = frame["product_id"].iloc[:300].dropna().to_numpy()
    more["product_id"] = np.where(more["product_id"].notna(), known[: len(more)], None)
    if new_product:
        more.loc[0, "product_id"] = "P-NEW"
    asked = pd.Index(["C002", "C001", "C007", "C008"], dtype="str")
    expected = pd.concat([as_text(stored.of(asked)), more], ignore_index=True)
    both = stored.of(asked, more=more)
    pd.testing.assert_frame_equal(as_text(both), expected)
    assert ("P-NEW" in both["product_id"].cat.categories) == new_product
    assert ("P-NEW" in stored.of(asked)["product_id"].cat.categories) == new_product
    with pytest.raises(ValueError, match="customer_id"):
        stored.of(pd.Index(["C001"], dtype="str"), more=more)


def test_a_shared_id_set_answers_as_its_source_from_one_unlinked_file():
    # stop 39: the worker and its refresh process held the same store ids twice (1.2 KB a
    # customer each); the process now writes them once and both map the file's pages
    ids = pd.Series([f"id-{i}" for i in range(20_000)])
    held = EventIdSet.of(ids[::2])
    file, shared = share(held)
    with file:
        assert shared.shares and len(shared) == len(held) and shared.nbytes == 0
        where = os.readlink(f"/proc/self/fd/{file.fileno()}")
        assert where.endswith("(deleted)"), where  # unlinked from the start: nothing left behind
        elsewhere = EventIdSet.mapped(os.dup(file.fileno()), len(held))  # as the worker maps it
    asked = pd.concat([ids, pd.Series(["", "id-0 "])], ignore_index=True)
    expected = held.contains(asked)
    assert (shared.contains(asked) == expected).all()
    assert (elsewhere.contains(asked) == expected).all()  # its file closed: the pages stay
    grown = EventIdSet.union([shared, EventIdSet.of(["id-1", "new"])])  # a fold's new ids
    assert grown.shares and grown.nbytes == 24 and len(grown) == len(held) + 2
    both = grown.contains(pd.Series(["id-0", "id-1", "id-3", "new"])).tolist()
    assert both == [True, True, False, True]
    with pytest.raises(ValueError, match="shared"):
        EventIdSet.union([shared, elsewhere])
    again, reshared = share(grown)  # shared again: one file of every id
    with again:
        assert (reshared.contains(asked) == grown.contains(asked)).all()


def test_identity_keys_find_each_code_by_fingerprint_even_when_64_bits_collide():
    # stop 44: the online identity's tuple keys are fingerprints with their customer's code
    from serving.live.identity import _Fingerprints

    keys = pd.Series([f"k{i}" for i in range(500)])
    held = _Fingerprints.of(keys[::2], np.arange(250))
    asked = pd.concat([keys, pd.Series(["", "k0 "])], ignore_index=True)
    expected = np.where(np.arange(len(asked)) % 2 == 0, np.arange(len(asked)) // 2, -1)
    expected[-2:] = -1
    assert held.codes_of(*fingerprints(asked)).tolist() == expected.tolist()
    hi, lo = fingerprints(pd.Series(["a", "b", "c"]))
    same_hi = np.array([hi[0], hi[0], hi[2]], np.uint64)  # as if "b" collided with "a"
    collided = _Fingerprints(same_hi, lo, np.array([7, 8, 9]))
    assert collided.codes_of(same_hi, lo).tolist() == [7, 8, 9]
    other_lo = (lo + 1).astype(np.uint32)
    assert collided.codes_of(same_hi, other_lo).tolist() == [-1, -1, -1]
    empty = _Fingerprints.of([], np.zeros(0, np.int32))
    assert empty.codes_of(hi, lo).tolist() == [-1, -1, -1]
