"""The event log as the recommender sees it: customer x product interactions as flat arrays.

``History.from_frames`` encodes once (customer, product, store ids as sorted int32 codes
through :mod:`features.encode` / :mod:`features.ids`, timestamps as int64 seconds) and
keeps only product events of customers: purchases, add-to-carts and views. Every later
step cuts it as of a cutoff with :meth:`History.before`, so rolling cutoffs never
re-encode. Returns are ignored (3 % of lines on synthetic data, none in Complete Journey).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.contract.schema import CHANNELS, EVENT_TYPES
from features.encode import encode_events, timestamps_us, to_us, value_codes
from features.ids import factorize, per_row

PRODUCT_EVENTS: tuple[str, ...] = ("purchase", "add_to_cart", "view")
PURCHASE = EVENT_TYPES.index("purchase")
DAY_S = 86_400


def to_seconds(t: pd.Timestamp | str) -> int:
    """A cutoff as int64 seconds since the epoch, UTC (naive times are UTC)."""
    return to_us(t) // 1_000_000


@dataclass
class Catalogue:
    """Id indices and dimension attributes; codes index these arrays.

    Kept inside a fitted recommender: it is what maps ids to rows of the factors and
    popularity tables at prediction time.
    """

    customer_ids: pd.Index
    item_ids: pd.Index
    store_ids: pd.Index
    item_category: np.ndarray  # int32 code into ``categories`` (-1 unknown)
    categories: pd.Index
    item_price: np.ndarray  # float32, NaN unknown
    store_region: np.ndarray  # int32 code into ``regions`` (-1 unknown)
    regions: pd.Index
    home_store: np.ndarray  # int32 store code per customer from the customers table, -1

    @property
    def n_customers(self) -> int:
        return len(self.customer_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def n_stores(self) -> int:
        return len(self.store_ids)

    def customer_codes(self, ids) -> np.ndarray:
        """int32 codes of customer ids (-1 for ids the catalogue has never seen)."""
        return positions(self.customer_ids, ids)

    def item_codes(self, ids) -> np.ndarray:
        """int32 codes of product ids (-1 unknown)."""
        return positions(self.item_ids, ids)

    def store_codes(self, ids) -> np.ndarray:
        """int32 codes of store ids (-1 unknown or missing)."""
        return positions(self.store_ids, ids)


def positions(index: pd.Index, ids) -> np.ndarray:
    """int32 position of each of ``ids`` in ``index`` (distinct string ids), -1 for ids it
    lacks and missing ones: Arrow's hash lookup, which reads the Arrow strings pandas
    holds as they are (pandas' ``get_indexer`` first converted them to Python objects:
    43 ms instead of 7 ms for a live refresh's 277,000 product ids). A categorical's
    categories are looked up once each."""
    if isinstance(getattr(ids, "dtype", None), pd.CategoricalDtype):
        cat = pd.Categorical(ids)
        return per_row(positions(index, cat.categories), cat.codes)
    values = pa.array(pd.Index(ids, dtype="str").array)
    found = pc.index_in(
        values, value_set=pa.array(pd.Index(index, dtype="str").array), skip_nulls=True
    )
    return found.fill_null(-1).to_numpy().astype(np.int32)  # a writable copy


BUILDER_COLUMNS = (
    *("customer_id", "ts", "channel", "event_type", "product_id", "quantity", "amount"),
    *("discount", "store_id", "order_id"),
)
"""The contract columns the shared feature builders read from ``History.events`` (the
live loop keeps only these: taking identifier columns it never reads cost it a third of
a refresh)."""


@dataclass
class History:
    """Product events of known customers, one entry per event, sorted by time."""

    catalogue: Catalogue
    events: pd.DataFrame  # the kept rows as a contract frame, for the shared builders
    customer: np.ndarray  # int32
    item: np.ndarray  # int32
    ts: np.ndarray  # int64 seconds, UTC
    event_type: np.ndarray  # int8 contract code
    channel: np.ndarray  # int8 contract code
    store: np.ndarray  # int32 store code, -1 none
    quantity: np.ndarray  # float32 (1 when unknown)

    @classmethod
    def from_frames(
        cls,
        events: pd.DataFrame,
        customers: pd.DataFrame | None = None,
        products: pd.DataFrame | None = None,
        stores: pd.DataFrame | None = None,
    ) -> History:
        """Encode contract frames; ids come from the events and the dimension tables."""
        enc = encode_events(events, customers)
        frame = enc._events
        if "product_id" not in frame.columns:
            raise ValueError("events need a product_id column to train a recommender")
        codes = [PURCHASE] + [EVENT_TYPES.index(e) for e in PRODUCT_EVENTS[1:]]
        product_cols = [frame["product_id"]]
        if products is not None and len(products):
            product_cols.append(products["product_id"].astype("str"))
        item_codes, item_ids = factorize(*product_cols)
        item = item_codes[0]
        keep = np.isin(enc.event_type, codes) & (enc.cust >= 0) & (item >= 0)
        rows = np.flatnonzero(keep)
        order = rows if enc.ts_sorted else rows[np.argsort(enc.ts[rows], kind="stable")]
        qty = (
            frame["quantity"].to_numpy(dtype=np.float32, na_value=np.nan)[order]
            if "quantity" in frame.columns
            else np.ones(len(order), np.float32)
        )
        qty = np.where(np.isnan(qty), np.float32(1), qty).astype(np.float32)
        catalogue = _catalogue(enc, item_ids, products, stores)
        return cls(
            catalogue=catalogue,
            events=frame.iloc[rows] if len(rows) < len(frame) else frame,
            customer=enc.cust[order].astype(np.int32),
            item=item[order].astype(np.int32),
            ts=enc.ts[order] // 1_000_000,
            event_type=enc.event_type[order].astype(np.int8),
            channel=enc.channel[order].astype(np.int8),
            store=enc.store[order].astype(np.int32),
            quantity=qty,
        )

    @classmethod
    def of_customers(
        cls, catalogue: Catalogue, events: pd.DataFrame, customer_ids: pd.Index
    ) -> History:
        """The product events of ``customer_ids`` (contract frame, customer ids resolved)
        with a fitted catalogue's product and store codes; customer codes are positions in
        ``customer_ids``, which the returned catalogue holds (home stores carried over).
        Products the catalogue lacks are left out. What the live loop ranks with."""
        kinds = value_codes(events["event_type"], EVENT_TYPES)
        rows = np.flatnonzero(np.isin(kinds, [EVENT_TYPES.index(e) for e in PRODUCT_EVENTS]))
        # ids looked up for product events only (a live refresh: 40% of the rows)
        cust = positions(customer_ids, events["customer_id"].iloc[rows])
        item = catalogue.item_codes(events["product_id"].iloc[rows])
        ok = (cust >= 0) & (item >= 0)
        rows, cust, item = rows[ok], cust[ok], item[ok]
        ts = timestamps_us(events["ts"].iloc[rows]) // 1_000_000
        by_time = np.argsort(ts, kind="stable")
        order = rows[by_time]
        frame = events[[c for c in BUILDER_COLUMNS if c in events.columns]].iloc[order]
        qty = frame["quantity"].to_numpy(dtype=np.float32, na_value=np.nan)
        known = catalogue.customer_codes(customer_ids)
        home = np.where(known >= 0, catalogue.home_store[np.maximum(known, 0)], -1)
        own = replace(catalogue, customer_ids=customer_ids, home_store=home.astype(np.int32))
        return cls(
            catalogue=own,
            events=frame,
            customer=cust[by_time].astype(np.int32),
            item=item[by_time].astype(np.int32),
            ts=ts[by_time],
            event_type=kinds[order].astype(np.int8),
            channel=value_codes(frame["channel"], CHANNELS).astype(np.int8),
            store=catalogue.store_codes(frame["store_id"]).astype(np.int32),
            quantity=np.where(np.isnan(qty), np.float32(1), qty).astype(np.float32),
        )

    def before(self, as_of: pd.Timestamp | str, lookback_days: int) -> np.ndarray:
        """Row positions with ``as_of - lookback <= ts < as_of`` (the point-in-time cut)."""
        t = to_seconds(as_of)
        lo, hi = np.searchsorted(self.ts, [t - lookback_days * DAY_S, t], side="left")
        return np.arange(lo, hi)

    def window(self, start: pd.Timestamp | str, days: int) -> np.ndarray:
        """Row positions with ``start <= ts < start + days`` (a label window)."""
        t = to_seconds(start)
        lo, hi = np.searchsorted(self.ts, [t, t + days * DAY_S], side="left")
        return np.arange(lo, hi)

    @property
    def first_ts(self) -> pd.Timestamp:
        return pd.Timestamp(int(self.ts[0]), unit="s", tz="UTC")

    @property
    def last_ts(self) -> pd.Timestamp:
        return pd.Timestamp(int(self.ts[-1]), unit="s", tz="UTC")


def _catalogue(enc, item_ids: pd.Index, products, stores) -> Catalogue:
    """Dimension attributes aligned with the codes."""
    n_items = len(item_ids)
    category = np.full(n_items, -1, np.int32)
    price = np.full(n_items, np.nan, np.float32)
    categories = pd.Index([], dtype="str")
    if products is not None and len(products):
        at = item_ids.get_indexer(pd.Index(products["product_id"], dtype="str"))
        if "category" in products.columns:
            (cat_codes,), categories = factorize(products["category"].astype("str"))
            category[at] = cat_codes
        if "price" in products.columns:
            price[at] = products["price"].to_numpy(dtype=np.float32, na_value=np.nan)
    store_ids = enc.stores
    region = np.full(len(store_ids), -1, np.int32)
    regions = pd.Index([], dtype="str")
    if stores is not None and len(stores) and "region" in stores.columns:
        (reg_codes,), regions = factorize(stores["region"].astype("str"))
        at = store_ids.get_indexer(pd.Index(stores["store_id"], dtype="str"))
        ok = at >= 0
        region[at[ok]] = reg_codes[ok]
    return Catalogue(
        customer_ids=enc.ids,
        item_ids=item_ids,
        store_ids=store_ids,
        item_category=category,
        categories=categories,
        item_price=price,
        store_region=region,
        regions=regions if regions is not None else pd.Index([], dtype="str"),
        home_store=enc.customers.home_store.astype(np.int32),
    )


N_CHANNELS = len(CHANNELS)
