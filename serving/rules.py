"""Business rules shared by the service and batch scoring, and the limits of a request.

- A channel the customer has not consented to is never recommended (its probability is
  removed and the rest renormalised, see :mod:`features.contract.consent`).
- Products the request excludes, or outside its category filter, are never returned.
- In the store channel with a store id, only products that store sold recently (the
  recommender's popularity window) are returned.
- No product twice, never more than k (the recommender's top-k step).

Bad requests raise :class:`RequestError` naming the field; the service answers 400, or 404
for a store or category the snapshot does not know (:class:`UnknownReference`).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MAX_K = 100
"""Largest list a request may ask for."""
MAX_CUSTOMERS = 1000
"""Most customer ids in one request (batch scoring has no such limit)."""
MAX_EVENTS = 1000
"""Most events one POST /events may carry."""
MAX_EXCLUDE = 1000
"""Most product ids a request may exclude."""
MAX_CATEGORIES = 100
RISK_BANDS: tuple[tuple[float, str], ...] = ((0.3, "low"), (0.6, "medium"), (1.01, "high"))
"""Churn probability below the bound -> band (first that applies)."""


class MissingModel(LookupError):
    """The snapshot does not hold the model a call needs (``str``: its snapshot key)."""


class RequestError(ValueError):
    """A client mistake: ``field`` names the offending request field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class UnknownReference(RequestError):
    """A well-formed request naming a store or category that does not exist."""


def risk_band(probability: np.ndarray) -> np.ndarray:
    """Band name per churn probability ("unknown" for NaN: customers without history)."""
    bounds = np.array([b for b, _ in RISK_BANDS])
    names = np.array([n for _, n in RISK_BANDS] + ["unknown"], dtype=object)
    at = np.searchsorted(bounds, probability, side="right")
    at = np.where(np.isnan(probability), len(RISK_BANDS), np.minimum(at, len(RISK_BANDS) - 1))
    return names[at]


def band_of(probability: float) -> str:
    """:func:`risk_band` of one probability (a request's answer: no arrays)."""
    if probability != probability:  # NaN
        return "unknown"
    for bound, name in RISK_BANDS:
        if probability < bound:
            return name
    return RISK_BANDS[-1][1]


class CatalogueIndex:
    """Id -> code dictionaries of the recommender's catalogue (a request looks up a few
    ids: a dict is ~50x cheaper than a pandas index search per call), plus each store's
    recent assortment."""

    def __init__(self, catalogue, store_counts) -> None:
        self.n_items = catalogue.n_items
        self.item = index_positions(catalogue.item_ids)
        self.store = index_positions(catalogue.store_ids)
        self.category = index_positions(catalogue.categories)
        self.item_category = catalogue.item_category
        self.store_items = store_assortments(store_counts)

    def item_codes(self, ids: Sequence[str]) -> np.ndarray:
        return np.array([self.item.get(i, -1) for i in ids], np.int64)


@dataclass(frozen=True)
class ItemRules:
    """What a recommendation request may return, as a bool mask over the catalogue."""

    exclude: tuple[str, ...] = ()
    categories: tuple[int, ...] | None = None  # category codes
    store_only: int | None = None  # store code: only products it sold recently

    def mask(self, index: CatalogueIndex) -> np.ndarray | None:
        """bool per item code (None: everything allowed)."""
        if not self.filters:
            return None
        allowed = np.ones(index.n_items, bool)
        if self.exclude:
            codes = index.item_codes(self.exclude)
            allowed[codes[codes >= 0]] = False
        if self.categories is not None:
            allowed &= np.isin(index.item_category, np.array(self.categories, np.int64))
        if self.store_only is not None:
            sold = np.zeros(index.n_items, bool)
            sold[index.store_items.get(self.store_only, np.zeros(0, np.int64))] = True
            allowed &= sold
        return allowed

    def allows(self, index: CatalogueIndex, items: np.ndarray) -> np.ndarray:
        """bool per item of ``items``: ``mask(index)[items]`` without the catalogue-wide
        mask. A list lookup checks tens of items, and in the service a fresh mask costs
        ~30 µs a request (page faults: glibc hands the arrays back to the system), so
        a comparison per excluded product when they are few (a request's usual two) and
        binary searches otherwise (``np.isin`` costs more than the mask on so few)."""
        keep = np.ones(len(items), bool)
        if self.exclude:
            excluded = index.item_codes(self.exclude)
            if len(excluded) <= FEW_EXCLUDED:
                for code in excluded.tolist():
                    keep &= items != code
            else:
                keep &= ~_among(items, np.sort(excluded))
        if self.categories is not None:
            keep &= _among(index.item_category[items], np.array(self.categories, np.int64))
        if self.store_only is not None:
            keep &= _among(items, index.store_items.get(self.store_only, _NONE))
        return keep

    def allow_nothing(self, index: CatalogueIndex) -> bool:
        """Whether no product passes: the store channel in a store that sold nothing in
        the popularity window (a new or closed store; 281 of Complete Journey's 457)."""
        return self.store_only is not None and not len(
            index.store_items.get(self.store_only, _NONE)
        )

    @property
    def filters(self) -> bool:
        """Whether the rules leave anything out."""
        return bool(self.exclude) or self.categories is not None or self.store_only is not None


_NONE = np.zeros(0, np.int64)
FEW_EXCLUDED = 8
"""Excluded products :meth:`ItemRules.allows` compares one by one (more: a binary search)."""


def _among(values: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    """bool per value: whether it is in ``sorted_set`` (sorted ascending)."""
    if not len(sorted_set):
        return np.zeros(len(values), bool)
    at = np.minimum(np.searchsorted(sorted_set, values), len(sorted_set) - 1)
    return sorted_set[at] == values


def item_rules(
    index: CatalogueIndex,
    channel: str | None,
    store_id: str | None,
    exclude: Sequence[str] | None,
    categories: Sequence[str] | None,
) -> tuple[ItemRules, int]:
    """Validate a request's product filters: (rules, store code or -1)."""
    exclude = tuple(exclude or ())
    if len(exclude) > MAX_EXCLUDE:
        raise RequestError("exclude", f"at most {MAX_EXCLUDE} product ids, got {len(exclude)}")
    codes = None
    if categories is not None:
        if not 1 <= len(categories) <= MAX_CATEGORIES:
            raise RequestError("categories", f"give 1 to {MAX_CATEGORIES} categories or omit it")
        unknown = [c for c in categories if c not in index.category]
        if unknown:
            raise UnknownReference("categories", f"unknown categories: {unknown[:5]}")
        codes = tuple(sorted({index.category[c] for c in categories}))
    store = -1
    if store_id is not None:
        store = index.store.get(store_id, -1)
        if store < 0:
            raise UnknownReference("store_id", f"unknown store {store_id!r}")
    store_only = store if channel == "store" and store >= 0 else None
    return ItemRules(exclude, codes, store_only), store


def index_positions(index) -> dict[str, int]:
    """{value: position} of an index (``tolist`` first: iterating an Arrow-backed string
    index element by element is ~10x slower, seconds for a million customers)."""
    return dict(zip(index.tolist(), range(len(index)), strict=True))


def store_assortments(store_counts) -> dict[int, np.ndarray]:
    """Item codes each store sold in the popularity window, from the recommender's
    store x item table."""
    if len(store_counts) == 0:
        return {}
    stores = store_counts.keys // store_counts.n_cols
    items = store_counts.keys % store_counts.n_cols
    bounds = np.flatnonzero(np.r_[True, stores[1:] != stores[:-1], True])
    return {int(stores[a]): items[a:b].astype(np.int64) for a, b in itertools.pairwise(bounds)}


def channel_ranking(proba: np.ndarray, classes: Sequence[str]) -> list[tuple[str, float]]:
    """(channel, probability) best first (ties in ``classes`` order), consented channels
    only (probability > 0); none for an unknown customer (NaN). In Python: a request's
    handful of channels."""
    values = proba.tolist()
    if any(v != v for v in values):  # NaN
        return []
    order = sorted(range(len(values)), key=lambda j: -values[j])
    return [(classes[j], values[j]) for j in order if values[j] > 0]
