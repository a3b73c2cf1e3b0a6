"""Synthetic generator: determinism, the data contract, and the planted structure it documents."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from features.contract import schema
from features.sources.base import SourceData, write_source
from features.sources.synthetic import AFFINITY_CHANNELS, generate

N_CUSTOMERS, DAYS, END = 2_000, 120, "2026-01-01"
ENGAGEMENT = ("view", "add_to_cart", "open", "click", "redeem", "store_visit")


@pytest.fixture(scope="module")
def data() -> SourceData:
    return generate(N_CUSTOMERS, DAYS, seed=11, end=END)


@pytest.fixture(scope="module")
def ev(data: SourceData) -> pd.DataFrame:
    """Events with plain-string channel / type and the true person of each row."""
    out = data.events.assign(
        channel=data.events.channel.astype(str),
        event_type=data.events.event_type.astype(str),
        person=data.truth["event_person"].person_id.to_numpy(),
    )
    truth = data.truth["customers"].set_index("customer_id")
    return out.assign(best=out.person.map(truth.best_channel))


@pytest.fixture(scope="module")
def truth(data: SourceData) -> pd.DataFrame:
    return data.truth["customers"].set_index("customer_id")


# ----------------------------------------------------------------------------- determinism


def test_same_seed_gives_identical_frames():
    a, b = generate(300, 60, seed=5), generate(300, 60, seed=5)
    for name in ("events", "customers", "products", "stores"):
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name))
    assert a.truth.keys() == b.truth.keys()
    for name in a.truth:
        pd.testing.assert_frame_equal(a.truth[name], b.truth[name])


def test_different_seed_gives_different_data():
    a, b = generate(300, 60, seed=5), generate(300, 60, seed=6)
    assert not a.events.equals(b.events)
    assert not a.customers.equals(b.customers)


# ----------------------------------------------------------------------------- contract


def test_tables_have_exactly_the_contract_columns(data: SourceData):
    for name, table in schema.TABLES.items():
        assert list(getattr(data, name).columns) == table.names, name


def test_dtypes_are_the_contract_dtypes(data: SourceData):
    for name, table in schema.TABLES.items():
        df = getattr(data, name)
        # already in contract form (same dtypes, categories included), castable to Arrow
        assert df.dtypes.equals(schema.as_contract_frame(df, table).dtypes), name
        pa.Table.from_pandas(df, preserve_index=False).cast(table.arrow_schema())
    events = data.events
    assert isinstance(events.ts.dtype, pd.DatetimeTZDtype) and str(events.ts.dtype.tz) == "UTC"
    assert tuple(events.channel.cat.categories) == schema.CHANNELS
    assert tuple(events.event_type.cat.categories) == schema.EVENT_TYPES
    assert tuple(data.customers.loyalty_tier.cat.categories) == schema.LOYALTY_TIERS


def test_required_fields_are_filled(data: SourceData):
    for name, table in schema.TABLES.items():
        df = getattr(data, name)
        for col in table.required:
            assert df[col].notna().all(), f"{name}.{col} has nulls"


def test_every_event_has_a_customer_id_or_an_identifier(data: SourceData):
    keys = data.events[["customer_id", *schema.IDENTIFIER_COLUMNS]]
    assert keys.notna().any(axis=1).all()


def test_no_empty_strings(data: SourceData):
    for name in ("events", "customers", "products", "stores"):
        df = getattr(data, name)
        for col in df.columns:
            if pd.api.types.is_string_dtype(df[col].dtype) and df[col].dtype != "category":
                assert not (df[col] == "").any(), f"{name}.{col}"


def test_dimension_keys_unique_and_referenced(data: SourceData):
    events = data.events
    for name, table in schema.TABLES.items():
        if table.key:
            assert getattr(data, name)[table.key].is_unique, name
    assert set(events.product_id.dropna()) <= set(data.products.product_id)
    assert set(events.store_id.dropna()) <= set(data.stores.store_id)
    assert set(events.customer_id.dropna()) <= set(data.customers.customer_id)
    assert set(data.customers.home_store_id) <= set(data.stores.store_id)


def test_id_formats(data: SourceData):
    assert data.customers.customer_id.str.fullmatch(r"C\d{7}").all()
    assert data.customers.customer_id.iloc[0] == "C0000001"
    assert data.products.product_id.str.fullmatch(r"P\d{6}").all()
    assert data.stores.store_id.str.fullmatch(r"S\d{4}").all()
    for col in ("email_hash", "phone_hash", "device_id"):
        assert data.events[col].dropna().str.fullmatch(r"[0-9a-f]{16}").all(), col


def test_events_sorted_and_inside_the_window(data: SourceData):
    ts = data.events.ts
    end = pd.Timestamp(END, tz="UTC")
    assert ts.is_monotonic_increasing
    assert ts.min() >= end - pd.Timedelta(days=DAYS)
    assert ts.max() < end


def test_purchase_and_return_lines_well_formed(ev: pd.DataFrame):
    purchases, returns = ev[ev.event_type == "purchase"], ev[ev.event_type == "return"]
    assert (purchases.quantity >= 1).all() and (purchases.amount > 0).all()
    assert purchases.order_id.notna().all() and purchases.product_id.notna().all()
    assert (returns.quantity >= 1).all() and (returns.amount < 0).all()
    assert (ev.discount.dropna() > 0).all()
    assert set(ev.event_type[ev.discount.notna()]) == {"purchase"}
    # a return matches a purchased line of the same order, after it
    bought = purchases.groupby(["order_id", "product_id"]).ts.min()
    matched = returns.join(bought.rename("bought"), on=["order_id", "product_id"])
    assert (matched.ts > matched.bought).all()


def test_defaults_scale_with_customers():
    small = generate(100, 30, seed=0)
    assert len(small.products) == 500 and len(small.stores) == 10
    sized = generate(100, 30, seed=0, n_products=40, n_stores=3)
    assert len(sized.products) == 40 and len(sized.stores) == 3


@pytest.mark.parametrize("kwargs", [{"n_customers": 0}, {"days": 0}, {"n_stores": 0}])
def test_rejects_bad_sizes(kwargs):
    args = {"n_customers": 10, "days": 10, "seed": 0} | kwargs
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        generate(**args)


def test_writes_as_parquet_source(tmp_path):
    small = generate(200, 30, seed=1)
    folder = write_source(small, tmp_path / "synthetic")
    back = pd.read_parquet(folder / "events.parquet")
    pd.testing.assert_frame_equal(back, small.events)
    assert (folder / "truth" / "event_person.parquet").exists()


# ----------------------------------------------------------------------------- ground truth


def test_truth_is_aligned_with_events(data: SourceData, truth: pd.DataFrame):
    person = data.truth["event_person"]
    assert list(person.columns) == ["person_id"]
    assert len(person) == len(data.events)
    assert person.person_id.notna().all()
    assert set(person.person_id) <= set(data.customers.customer_id)
    known = data.events.customer_id.notna()
    assert (data.events.customer_id[known] == person.person_id[known]).all()
    assert list(truth.index) == list(data.customers.customer_id)
    affinity = truth[[f"affinity_{c}" for c in AFFINITY_CHANNELS]]
    np.testing.assert_allclose(affinity.sum(axis=1), 1.0)
    assert truth.lapse_ts.notna().eq(truth.churned).all()


def test_no_events_before_signup(ev: pd.DataFrame, data: SourceData):
    signup = data.customers.set_index("customer_id").signup_ts
    assert (ev.ts >= ev.person.map(signup)).all()
    in_window = signup >= pd.Timestamp(END, tz="UTC") - pd.Timedelta(days=DAYS)
    assert 0.10 < in_window.mean() < 0.20


# ----------------------------------------------------------------------------- planted structure


def test_churners_fade_then_stop(ev: pd.DataFrame, truth: pd.DataFrame):
    assert 0.15 < truth.churned.mean() < 0.25
    by_tier = truth.groupby("tier").churned.mean()
    assert by_tier["none"] > by_tier["gold"]
    last60 = ev.ts >= pd.Timestamp(END, tz="UTC") - pd.Timedelta(days=60)
    bought = ev.person[(ev.event_type == "purchase") & last60].value_counts()
    bought = bought.reindex(truth.index, fill_value=0)
    ratio = bought[truth.churned].mean() / bought[~truth.churned].mean()
    assert ratio < 0.35
    after = ev.ts >= ev.person.map(truth.lapse_ts)
    assert set(ev.event_type[after]) == {"message_sent"}


def test_churners_decline_before_lapsing():
    data = generate(3_000, 365, seed=3)
    truth = data.truth["customers"].set_index("customer_id")
    ev = data.events.assign(person=data.truth["event_person"].person_id.to_numpy())
    ev = ev[(ev.event_type == "purchase") & ev.person.map(truth.churned)]
    days_left = (ev.person.map(truth.lapse_ts) - ev.ts).dt.days
    early = days_left.between(120, 179).sum()  # before the decline starts
    late = days_left.between(0, 59).sum()  # at the end of the decline
    assert late < 0.7 * early


@pytest.mark.parametrize("channel", AFFINITY_CHANNELS)
def test_best_channel_dominates_engagement(ev: pd.DataFrame, channel: str):
    engaged = ev[ev.event_type.isin(ENGAGEMENT)]
    on_channel = engaged.channel == channel
    share_best = on_channel[engaged.best == channel].mean()
    share_others = on_channel[engaged.best != channel].mean()
    assert share_best > 3 * share_others


def test_last_touch_before_purchase_recovers_best_channel(ev: pd.DataFrame):
    """Channel of the last engagement within 7 days before an order (else its channel)."""
    orders = ev[ev.event_type == "purchase"].drop_duplicates("order_id")
    touches = ev[ev.event_type.isin(ENGAGEMENT[:-1])][["person", "ts", "channel"]]
    touches = touches.rename(columns={"ts": "touch_ts", "channel": "touch"})
    merged = pd.merge_asof(
        orders[["person", "ts", "channel", "best"]],
        touches,
        left_on="ts",
        right_on="touch_ts",
        by="person",
        allow_exact_matches=False,
    )
    recent = (merged.ts - merged.touch_ts) <= pd.Timedelta(days=7)
    label = merged.touch.where(recent, merged.channel)
    assert (label == merged.best).mean() > 0.65


def test_replies_rise_with_affinity(ev: pd.DataFrame):
    for channel in schema.OUTREACH_CHANNELS:
        on = ev[ev.channel == channel]
        best = on.best == channel
        sent = on.event_type == "message_sent"
        opened = on.event_type == "open"
        rate_best = opened[best].sum() / sent[best].sum()
        rate_others = opened[~best].sum() / sent[~best].sum()
        assert rate_best > 4 * rate_others, channel


def test_higher_tiers_buy_more(ev: pd.DataFrame, truth: pd.DataFrame):
    bought = ev.person[ev.event_type == "purchase"].value_counts()
    per_tier = bought.reindex(truth.index, fill_value=0).groupby(truth.tier).mean()
    assert per_tier["gold"] > 2 * per_tier["none"]
    assert per_tier["silver"] > per_tier["bronze"]


def test_staples_are_rebought(ev: pd.DataFrame, data: SourceData):
    staples = data.truth["staples"]
    assert staples.groupby("customer_id").size().between(1, 8).all()
    purchases = ev[ev.event_type == "purchase"]
    keys = pd.MultiIndex.from_frame(staples)
    is_staple = pd.MultiIndex.from_arrays([purchases.person, purchases.product_id]).isin(keys)
    assert is_staple.mean() > 0.35


def test_shopping_shares(ev: pd.DataFrame):
    purchases = ev[ev.event_type == "purchase"]
    orders = purchases.drop_duplicates("order_id")
    online = orders[orders.channel.isin(schema.ONLINE_CHANNELS)]
    assert 0.10 < online.store_id.notna().mean() < 0.20  # BOPIS
    assert 0.02 < (ev.event_type == "return").sum() / len(purchases) < 0.04
    assert 0.15 < purchases.discount.notna().mean() < 0.27


def test_store_baskets(ev: pd.DataFrame, data: SourceData):
    store = ev[ev.channel == "store"]
    visits = store[store.event_type == "store_visit"]
    lines = store[store.event_type == "purchase"]
    assert visits.order_id.is_unique
    assert set(lines.order_id) == set(visits.order_id)
    basket = lines.groupby("order_id").agg(store=("store_id", "nunique"), ts=("ts", "nunique"))
    assert (basket.store == 1).all() and (basket.ts == 1).all()
    home = visits.person.map(data.customers.set_index("customer_id").home_store_id)
    assert 0.80 < (visits.store_id == home).mean() < 0.95


# ----------------------------------------------------------------------------- identifiers


def test_customer_id_only_on_outreach(ev: pd.DataFrame):
    outreach = ev.channel.isin(schema.OUTREACH_CHANNELS)
    assert ev.customer_id[outreach].notna().all()
    assert ev.customer_id[~outreach].isna().all()
    assert set(ev.event_type[outreach]) == {"message_sent", "open", "click", "redeem"}


def test_identifiers_by_channel(ev: pd.DataFrame):
    by = {c: ev[ev.channel == c] for c in AFFINITY_CHANNELS}
    assert by["email"].email_hash.notna().all()
    assert by["sms"].phone_hash.notna().all()
    assert by["push"].device_id.notna().all()
    assert by["direct_mail"][list(schema.IDENTIFIER_COLUMNS)].isna().all().all()
    store = by["store"]
    assert store.loyalty_id.notna().all() and store.device_id.isna().all()
    visits = store[store.event_type == "store_visit"]
    assert 0.25 < visits.phone_hash.notna().mean() < 0.35
    online = ev[ev.channel.isin(schema.ONLINE_CHANNELS)]
    assert online.device_id.notna().all()
    assert online.email_hash[online.event_type == "purchase"].notna().all()
    assert 0.6 < online.email_hash.notna().mean() < 0.85
    online_orders = online[online.event_type == "purchase"]
    bopis = online_orders.store_id.notna()
    assert online_orders.loyalty_id[bopis].notna().all()
    assert online_orders.loyalty_id[~bopis].isna().all()


def test_own_identifiers_belong_to_one_person(ev: pd.DataFrame, data: SourceData):
    hubs = set(data.truth["shared_identifiers"].value)
    for col in schema.IDENTIFIER_COLUMNS:
        values = ev[[col, "person"]].dropna()
        values = values[~values[col].isin(hubs)]
        assert (values.groupby(col).person.nunique() == 1).all(), col


def test_hub_identifiers_link_several_people(ev: pd.DataFrame, data: SourceData):
    hubs = data.truth["shared_identifiers"]
    assert list(hubs.columns) == ["column", "value", "kind", "n_people"]
    assert set(hubs.kind) == {"family_tablet", "store_default_card"}
    assert (hubs.kind == "store_default_card").sum() == len(data.stores)
    for hub in hubs.itertuples():
        people = ev.person[ev[hub.column] == hub.value].nunique()
        assert people == hub.n_people
    # small data: a few hubs see only one person, but every kind links several people
    assert (hubs.groupby("kind").n_people.max() >= 2).all()
    assert hubs.n_people.mean() > 1.5
    # each person on a shared tablet logs in with their own e-mail
    tablets = hubs[(hubs.kind == "family_tablet") & (hubs.n_people > 1)]
    assert len(tablets) > 0
    on_tablet = ev[ev.device_id.isin(tablets.value) & ev.email_hash.notna()]
    assert (on_tablet.groupby("device_id").email_hash.nunique() > 1).any()
    assert (on_tablet.groupby("email_hash").person.nunique() == 1).all()


def test_default_cards_carry_other_peoples_phones(ev: pd.DataFrame, data: SourceData):
    cards = data.truth["shared_identifiers"].query("kind == 'store_default_card'").value
    baskets = ev[ev.loyalty_id.isin(cards) & ev.phone_hash.notna()]
    assert baskets.person.nunique() > 1
    assert re.fullmatch(r"L\d{10}", cards.iloc[0])
