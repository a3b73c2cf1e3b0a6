"""Product-side features for the recommender, as of a cutoff, with the customer rules.

- :func:`build_item_features`: product popularity per window (order lines, units,
  views), buyers, repurchase rate and days since last sold; over all stores
  (``by=None``, one row per product), or per store / region of the purchase
  (``by="store"`` / ``"region"``, one row per place and product sold there).
- :func:`build_customer_item_features`: one row per (customer, product) bought in the
  lookback: times and days bought, units, days since last bought.

Point in time and lookback are those of :mod:`features.registry`: only events with
``as_of - lookback < ts < as_of``. A line without ``quantity`` counts as one unit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd

from features import kernels as k
from features.customer_features import assemble
from features.cut import Cut, cut
from features.encode import encode_events
from features.ids import STR, factorize
from features.memory import reuse_freed_memory
from features.registry import DEFAULT_WINDOWS, customer_item_features, item_features
from features.schema import EVENT_TYPES, PRODUCTS, STORES, as_contract_frame

PURCHASE, VIEW = EVENT_TYPES.index("purchase"), EVENT_TYPES.index("view")
By = Literal["store", "region"] | None


def build_item_features(
    events: pd.DataFrame,
    products: pd.DataFrame | None = None,
    as_of: pd.Timestamp | str | None = None,
    windows: Sequence[int] = DEFAULT_WINDOWS,
    by: By = None,
    stores: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Product features as of ``as_of``: per product, or per (store|region, product)."""
    if as_of is None:
        raise ValueError("as_of is required: features are always as of a cutoff")
    if by not in (None, "store", "region"):
        raise ValueError(f"by must be None, 'store' or 'region', got {by!r}")
    with reuse_freed_memory():
        c = cut(encode_events(events), as_of, windows)
        lines = _Lines(c, events, products)
        place, places = _places(c, events, lines.rows, by, stores)
        return _item_table(c, lines, place, places, by)


def build_customer_item_features(
    events: pd.DataFrame,
    as_of: pd.Timestamp | str | None = None,
    windows: Sequence[int] = DEFAULT_WINDOWS,
) -> pd.DataFrame:
    """One row per (customer, product) bought in the lookback, sorted by both ids."""
    if as_of is None:
        raise ValueError("as_of is required: features are always as of a cutoff")
    with reuse_freed_memory():
        c = cut(encode_events(events), as_of, windows)
        lines = _Lines(c, events, None)
        buy = lines.purchase & (lines.code < c.n)
        n_p = len(lines.products)
        key = lines.code[buy] * n_p + lines.product[buy]
        pair, uniq = pd.factorize(key, sort=True)
        n = len(uniq)
        day = lines.day[buy]
        cols = {
            "times_bought": k.counts(pair, n),
            "days_bought": k.counts(k.distinct(pair * c.lookback + day) // c.lookback, n),
            "units_bought": k.counts(pair, n, lines.units[buy]),
            "days_since_last_bought": k.days(
                k.minimum(pair, lines.age[buy], n, fill=k.NEVER), float(c.lookback)
            ),
        }
        index = pd.MultiIndex.from_arrays(
            [c.ids[uniq // n_p], lines.products[uniq % n_p]], names=["customer_id", "product_id"]
        )
        return assemble(cols, customer_item_features(c.windows), index)


class _Lines:
    """The cut's purchase and view rows that name a product, with product codes."""

    def __init__(self, c: Cut, events: pd.DataFrame, products: pd.DataFrame | None) -> None:
        if "product_id" not in events.columns:
            raise ValueError("events lack product_id: item features need it")
        et = c.event_type
        rows = np.flatnonzero((et == PURCHASE) | (et == VIEW))
        at = np.arange(c.enc.n_events)[c.rows][rows]  # positions in the events frame
        cols = [events["product_id"].iloc[at]]
        if products is not None and len(products):
            cols.append(as_contract_frame(products, PRODUCTS)["product_id"])
        codes, self.products = factorize(*cols)
        has = codes[0] >= 0
        self.rows, self.at = rows[has], at[has]
        self.product = codes[0][has].astype(np.int64)
        self.listed = codes[1] if len(codes) > 1 else np.zeros(0, dtype=np.int32)
        self.purchase = c.event_type[self.rows] == PURCHASE
        self.code = c.code[self.rows]
        self.age = c.age[self.rows]
        self.day = c.day[self.rows].astype(np.int64)
        self.band = c.band_of_day(c.day[self.rows])
        qty = events["quantity"] if "quantity" in events.columns else None
        units = np.ones(len(self.rows))
        if qty is not None:
            units = qty.iloc[self.at].to_numpy(dtype=np.float64, na_value=1.0)
        self.units = units


def _places(c: Cut, events: pd.DataFrame, rows: np.ndarray, by: By, stores) -> tuple:
    """Place code per line (-1: none) and the place ids, for ``by`` store / region."""
    if by is None:
        return None, None
    if "store_id" not in events.columns:
        raise ValueError("events lack store_id: per-store item features need it")
    store = c.pick(c.enc.store)
    if by == "store":
        return store, c.enc.stores
    if stores is None or "region" not in stores.columns:
        raise ValueError("per-region item features need the stores table with its region")
    stores = as_contract_frame(stores, STORES)
    (_, code_of_row), _ = factorize(pd.Series(c.enc.stores, dtype=STR), stores["store_id"])
    (region_of_row,), regions = factorize(stores["region"])
    region_of_store = np.full(len(c.enc.stores) + 1, -1, dtype=np.int64)
    listed = code_of_row >= 0
    region_of_store[code_of_row[listed]] = region_of_row[listed]
    return np.where(store >= 0, region_of_store[store], -1), regions


def _item_table(c: Cut, lines: _Lines, place, places, by: By) -> pd.DataFrame:
    n_p, nb = len(lines.products), len(c.windows)
    if by is None:
        n = n_p
        item = lines.product
        keep = np.ones(len(item), dtype=bool)
        index = lines.products.rename("product_id")
    else:
        p = place[lines.rows].astype(np.int64)
        keep = (p >= 0) & lines.purchase
        item_key = p[keep] * n_p + lines.product[keep]
        codes, uniq = pd.factorize(item_key, sort=True)
        n = len(uniq)
        item = np.full(len(p), -1, dtype=np.int64)
        item[keep] = codes
        index = pd.MultiIndex.from_arrays(
            [places[uniq // n_p], lines.products[uniq % n_p]], names=[by, "product_id"]
        )
    buy = keep & lines.purchase
    view = keep & ~lines.purchase

    def windowed(mask: np.ndarray, weights=None) -> np.ndarray:
        key = lines.band[mask].astype(np.int64) * n + item[mask]
        per = k.counts(key, nb * n, None if weights is None else weights[mask]).reshape(nb, n)
        return np.cumsum(per, axis=0)

    orders, units, views = windowed(buy), windowed(buy, lines.units), windowed(view)
    cols = {}
    for j, d in enumerate(c.windows):
        cols[f"orders_{d}d"] = orders[j]
        cols[f"units_{d}d"] = units[j]
        cols[f"views_{d}d"] = views[j]
    who = lines.code[buy]
    known = who < c.n
    bought = item[buy][known]
    buyer_days = k.distinct((bought * (c.n + 1) + who[known]) * c.lookback + lines.day[buy][known])
    buyer = buyer_days // c.lookback
    first = np.ones(len(buyer), dtype=bool)
    first[1:] = buyer[1:] != buyer[:-1]
    days_per_buyer = np.diff(np.append(np.flatnonzero(first), len(buyer)))
    buyer_item = buyer[first] // (c.n + 1)
    buyers = k.counts(buyer_item, n)
    cols["buyers"] = buyers
    cols["repurchase_rate"] = k.ratio(k.counts(buyer_item[days_per_buyer >= 2], n), buyers, np.nan)
    last = k.minimum(item[buy], lines.age[buy], n, fill=k.NEVER)
    cols["days_since_last_sold"] = k.days(last, float(c.lookback))
    return assemble(cols, item_features(c.windows), index)
