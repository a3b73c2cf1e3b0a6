"""Identity resolution for live events: the same linking an append load does, online.

The graph starts as the store's (every identifier tuple loaded so far, and the customer it
resolves to) and grows with each batch, so an event with only a known ``email_hash``
lands on that customer, and new identifiers link exactly as a batch load of the same
events would link them (:func:`features.store.events.link_identities`).

Resolution depends only on the set of tuples, so a batch that adds no link resolves by
lookup (instead of resolving the whole graph again): an event whose tuple the graph
holds takes that tuple's customer; an event that names only a ``customer_id`` (a tuple
of one identifier links nothing) takes that customer id's customer when the graph knows
it (a customer id is never cut from its component, so all its tuples resolve alike), and
is a customer of its own, that id, when it does not.

The lookups hold each tuple's text key as a 96-bit fingerprint (as the event-id sets do,
:func:`serving.live.id_set.fingerprints`) and its customer as a code into the distinct
customer ids: text keys in an index and one Python string a tuple took ~1 KB a customer
in each process that resolves (the worker and its live refresh process).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.contract.schema import IDENTIFIER_COLUMNS
from features.store.events import link_identities
from features.store.identity import LINK_COLUMNS, RESOLVED
from features.store.parts import RAW_CUSTOMER_ID
from serving.live.id_set import fingerprints, positions_of

_NULL, _SEP = "\x00", "\x1f"  # a missing identifier, and between a tuple's identifiers


def tuple_keys(frame: pd.DataFrame, customer_id: str = "customer_id") -> pd.Index:
    """One text key per row for its tuple of raw identifiers (``customer_id`` read from
    the column ``customer_id``; a column the frame lacks counts as missing)."""
    parts = []
    for column in LINK_COLUMNS:
        source = customer_id if column == "customer_id" else column
        if source in frame.columns:
            parts.append(frame[source].astype("str").fillna(_NULL).reset_index(drop=True))
        else:
            parts.append(pd.Series(_NULL, index=pd.RangeIndex(len(frame)), dtype="str"))
    return pd.Index(parts[0].str.cat(parts[1:], sep=_SEP))


class OnlineIdentity:
    """Resolves batches of live events against a growing identity graph."""

    def __init__(self, graph: pd.DataFrame | None, max_component: int | None) -> None:
        """``graph``: the store's (:func:`features.store.events.read_identity_graph`);
        ``max_component``: the store's setting (None: customer ids are taken as given)."""
        self.max_component = max_component
        self._set_graph(graph)
        self.moved: dict[str, str] = {}
        """Customers the last :meth:`resolve` merged into another: old id -> new id."""

    def _set_graph(self, graph: pd.DataFrame | None) -> None:
        self.graph = graph
        if graph is None or not len(graph):
            self._customers = np.array([], dtype=object)
            self._keys = self._raw = _Fingerprints.of([], np.zeros(0, np.int32))
            return
        codes, customers = pd.factorize(graph[RESOLVED].astype("str"))
        self._customers = customers.to_numpy(dtype=object)
        keys = tuple_keys(graph)
        unique = ~keys.duplicated()
        self._keys = _Fingerprints.of(keys[unique], codes[unique])
        raw = graph["customer_id"].astype("str")
        first = raw.notna().to_numpy() & ~raw.duplicated().to_numpy()
        self._raw = _Fingerprints.of(raw[first], codes[first])

    def resolve(self, events: pd.DataFrame) -> pd.DataFrame:
        """``events`` (contract frame) with ``customer_id`` resolved and the id as given in
        ``raw_customer_id``; the graph then holds their tuples.
        :class:`~features.store.identity.UnresolvableEventError` for an event with
        neither a customer id nor an identifier."""
        ids = self._lookup(events)
        self.moved = {}
        if ids is not None:  # nothing new to link
            out = events.copy(deep=False)
            out[RAW_CUSTOMER_ID] = events["customer_id"].astype("str")
            out["customer_id"] = pd.Series(ids, index=events.index, dtype="str")
            return out
        resolved, graph, _ = link_identities(
            events.copy(deep=False), self.graph, self.max_component
        )
        before = self._keys, self._customers
        self._set_graph(graph)
        self.moved = merged_ids(*before, self._keys, self._customers)
        resolved["customer_id"] = resolved["customer_id"].astype("str")
        resolved[RAW_CUSTOMER_ID] = resolved[RAW_CUSTOMER_ID].astype("str")
        return resolved

    def _lookup(self, events: pd.DataFrame) -> np.ndarray | None:
        """Each event's customer when the batch links nothing new (see the module
        docstring), else None. An event that names only a customer id is looked up by that
        id alone, without building its tuple's key (most live events: 4 ms of a 2,000-event
        batch's 5)."""
        if not len(self._keys):
            return None
        given = events["customer_id"].astype("str")
        named = [c for c in IDENTIFIER_COLUMNS if c in events.columns]
        alone = given.notna().to_numpy()
        if named:
            alone = alone & events[named].isna().all(axis=1).to_numpy()
        ids = np.full(len(events), None, dtype=object)
        rest = np.flatnonzero(~alone)
        if len(rest):
            at = self._keys.codes_of(*fingerprints(tuple_keys(events.iloc[rest])))
            if (at < 0).any():
                return None
            ids[rest] = self._customers[at]
        if len(rest) < len(events):
            by_id = self._raw.codes_of(*fingerprints(given[alone]))
            known = self._customers[np.maximum(by_id, 0)]
            given_ids = given.to_numpy(dtype=object)[alone]
            ids[alone] = np.where(by_id >= 0, known, given_ids)  # a new one alone: its own
        return ids


class _Fingerprints:
    """Distinct text keys as 96-bit fingerprints sorted, each with a code (its customer):
    :meth:`codes_of` finds keys by binary search, as the event-id sets do
    (:func:`~serving.live.id_set.positions_of`)."""

    def __init__(self, hi: np.ndarray, lo: np.ndarray, codes: np.ndarray) -> None:
        order = np.argsort(hi, kind="stable")
        self.hi, self.lo, self.codes = hi[order], lo[order], codes[order].astype(np.int32)

    @classmethod
    def of(cls, keys, codes: np.ndarray) -> _Fingerprints:
        """``keys`` (distinct text) with their ``codes``."""
        return cls(*fingerprints(keys), codes)

    def __len__(self) -> int:
        return len(self.hi)

    def codes_of(self, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
        """The code of each key given by its fingerprints (-1: not held)."""
        at = positions_of(self.hi, self.lo, hi, lo)
        out = np.full(len(at), -1, np.int32)
        out[at >= 0] = self.codes[at[at >= 0]]
        return out


def merged_ids(
    old_keys: _Fingerprints,
    old_customers: np.ndarray,
    new_keys: _Fingerprints,
    new_customers: np.ndarray,
) -> dict[str, str]:
    """Customers a link merged into another, old id -> new id: every tuple of the old id
    now resolves to that one new id, and no tuple resolves to the old id any more (a
    component the over-merge guard split is not a merge: its ids stay)."""
    if not len(old_keys):
        return {}
    old_ids = old_customers[old_keys.codes]
    now = new_customers[new_keys.codes_of(old_keys.hi, old_keys.lo)]  # a graph only grows
    changed = pd.DataFrame({"old": old_ids, "new": now})[old_ids != now]
    if changed.empty:
        return {}
    targets = changed.groupby("old")["new"].agg(["nunique", "first"])
    whole = targets[(targets["nunique"] == 1) & ~targets.index.isin(new_customers)]
    return {str(k): str(v) for k, v in whole["first"].items()}
