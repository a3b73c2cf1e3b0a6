"""Identity resolution for live events: the same linking an append load does, online.

The graph starts as the store's (every identifier tuple loaded so far, and the customer it
resolves to) and grows with each batch, so an event with only a known ``email_hash``
lands on that customer, and new identifiers link exactly as a batch load of the same
events would link them (:func:`features.store.events.link_identities`).
"""

from __future__ import annotations

import pandas as pd

from features.store.events import link_identities
from features.store.parts import RAW_CUSTOMER_ID


class OnlineIdentity:
    """Resolves batches of live events against a growing identity graph."""

    def __init__(self, graph: pd.DataFrame | None, max_component: int | None) -> None:
        """``graph``: the store's (:func:`features.store.events.read_identity_graph`);
        ``max_component``: the store's setting (None: customer ids are taken as given)."""
        self.graph = graph
        self.max_component = max_component

    def resolve(self, events: pd.DataFrame) -> pd.DataFrame:
        """``events`` (contract frame) with ``customer_id`` resolved and the id as given in
        ``raw_customer_id``; the graph then holds their tuples. ValueError for an event
        with neither a customer id nor an identifier."""
        resolved, self.graph, _ = link_identities(
            events.copy(deep=False), self.graph, self.max_component
        )
        resolved["customer_id"] = resolved["customer_id"].astype("str")
        resolved[RAW_CUSTOMER_ID] = resolved[RAW_CUSTOMER_ID].astype("str")
        return resolved
