"""Unified customer identity: link identifiers seen together into one customer.

Every non-empty value of ``customer_id`` and of each identifier column is a node;
identifiers on the same event are linked; connected components are customers.
Over-merge guard: a component with more than ``max_component_size`` identifiers, or
with two known customer_ids (the CRM says they are different people), is split by
cutting the identifiers that glue it together (a shared family device, a store's
default loyalty card: devices and loyalty cards first) until every part fits; the cut
identifiers are reported and never merged with anyone.

The resolved customer_id is stable across re-runs: the smallest known customer_id in
the component, else ``U`` + a hash of the component's smallest identifier.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from features.contract.schema import IDENTIFIER_COLUMNS

# When several identifiers are equally linked, cut the kinds that are shared in practice first.
_CUT_PRIORITY = {"device_id": 0, "loyalty_id": 1, "phone_hash": 2, "email_hash": 3}
_NEVER_CUT = "customer_id"
MAX_GUARD_ROUNDS = 50
LINK_COLUMNS: tuple[str, ...] = ("customer_id", *IDENTIFIER_COLUMNS)
"""An identity graph's tuple: customer_id as the source gave it, and the identifiers."""
RESOLVED = "resolved_id"
"""Column of an identity graph: the customer id that a tuple of raw identifiers resolves to."""


class UnresolvableEventError(ValueError):
    """An event names no customer id and no identifier: the input's fault, not ours."""


@dataclass
class IdentityReport:
    """What resolution did: sizes, and the identifiers it refused to merge."""

    n_events: int
    n_identifiers: int
    n_customers: int
    n_known_customers: int
    cut_identifiers: pd.DataFrame  # column, value, links, component_size
    n_events_only_cut: int  # events whose only identifiers were cut (kept apart, unmerged)

    def lines(self) -> list[str]:
        out = [
            f"{self.n_identifiers:,} identifiers on {self.n_events:,} events -> "
            f"{self.n_customers:,} customers ({self.n_known_customers:,} with a known customer_id)"
        ]
        if len(self.cut_identifiers):
            top = self.cut_identifiers.head(5)
            listed = ", ".join(
                f"{r.column}={r.value} ({r.links} links)" for r in top.itertuples(index=False)
            )
            out.append(
                f"over-merge guard: {len(self.cut_identifiers):,} shared identifiers not merged "
                f"(e.g. {listed}); {self.n_events_only_cut:,} events carry only those"
            )
        return out


def _node_codes(events: pd.DataFrame, columns: list[str]) -> tuple[np.ndarray, list, np.ndarray]:
    """Global node id per (event, column), -1 where empty; plus each node's value and column."""
    codes = np.full((len(events), len(columns)), -1, dtype=np.int64)
    values: list = []
    node_col = []
    offset = 0
    for j, col in enumerate(columns):
        c, uniques = pd.factorize(events[col], sort=True, use_na_sentinel=True)
        present = c >= 0
        codes[present, j] = c[present] + offset
        values.extend(np.asarray(uniques, dtype=object).tolist())
        node_col.append(np.full(len(uniques), j, dtype=np.int8))
        offset += len(uniques)
    return codes, values, np.concatenate(node_col) if node_col else np.empty(0, np.int8)


def _edges(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique undirected links between every pair of identifiers on the same event."""
    src, dst = [], []
    k = codes.shape[1]
    for a in range(k):
        for b in range(a + 1, k):
            both = (codes[:, a] >= 0) & (codes[:, b] >= 0)
            src.append(codes[both, a])
            dst.append(codes[both, b])
    if not src:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    s, d = np.concatenate(src), np.concatenate(dst)
    n = int(codes.max(initial=0)) + 1
    keys = np.unique(np.minimum(s, d) * n + np.maximum(s, d))
    return keys // n, keys % n


def _components(n: int, src: np.ndarray, dst: np.ndarray, keep: np.ndarray) -> np.ndarray:
    m = keep[src] & keep[dst]
    graph = coo_matrix((np.ones(m.sum(), np.int8), (src[m], dst[m])), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def _kind_spread(
    src: np.ndarray, dst: np.ndarray, keep: np.ndarray, node_col: np.ndarray, n_kinds: int
) -> np.ndarray:
    """Per identifier: the most distinct neighbours it has of any one kind.

    A person has one e-mail, one card and a device or two, so an identifier linked to
    many e-mails (or many cards) is what glues different people together.
    """
    m = keep[src] & keep[dst]
    a = np.concatenate([src[m], dst[m]])
    b = np.concatenate([dst[m], src[m]])
    counts = np.bincount(a * n_kinds + node_col[b], minlength=len(keep) * n_kinds)
    return counts.reshape(len(keep), n_kinds).max(axis=1)


def _guard(
    n: int,
    src: np.ndarray,
    dst: np.ndarray,
    node_col: np.ndarray,
    columns: list[str],
    max_size: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cut the most-linked identifiers of oversized components until all fit.

    Returns component labels (cut identifiers are singletons), the cut mask, and the
    size of the component each cut identifier was cut from.
    """
    keep = np.ones(n, bool)
    cut_from = np.zeros(n, np.int64)
    priority = np.array([_CUT_PRIORITY.get(c, 4) for c in columns])[node_col]
    never = np.array([c == _NEVER_CUT for c in columns])[node_col]
    for _ in range(MAX_GUARD_ROUNDS):
        labels = _components(n, src, dst, keep)
        sizes = np.bincount(labels)
        known = np.bincount(labels, weights=never & keep, minlength=len(sizes))
        over = ((sizes[labels] > max_size) | (known[labels] > 1)) & keep & ~never
        if not over.any():
            break
        spread = _kind_spread(src, dst, keep, node_col, len(columns))
        cand = np.flatnonzero(over)
        # Linked to the most identifiers of one kind first (a tablet with many e-mails),
        # then devices / loyalty cards before e-mails; one cut per component per round.
        order = np.lexsort((priority[cand], -spread[cand], labels[cand]))
        cand = cand[order]
        first = np.r_[True, labels[cand][1:] != labels[cand][:-1]]
        chosen = cand[first]
        keep[chosen] = False
        cut_from[chosen] = sizes[labels[chosen]]
    labels = _components(n, src, dst, keep)
    sizes = np.bincount(labels)
    # Components still too large (only customer_ids left to cut) are left unmerged.
    unmerged = (sizes[labels] > max_size) & keep
    if unmerged.any():
        cut_from[unmerged] = sizes[labels[unmerged]]
        keep[unmerged] = False
    # Cut identifiers become singletons.
    labels = np.where(keep, labels, labels.max(initial=-1) + 1 + np.arange(n))
    _, labels = np.unique(labels, return_inverse=True)
    return labels, ~keep, cut_from


def _stable_ids(
    labels: np.ndarray, values: list, node_col: np.ndarray, columns: list[str]
) -> np.ndarray:
    """Customer id per component: smallest known customer_id, else U + hash of smallest key.

    Node ids are ordered by (column, sorted value) with customer_id first, so the
    smallest node id of a component is its representative.
    """
    n_comp = int(labels.max()) + 1 if len(labels) else 0
    rep = np.full(n_comp, len(labels), np.int64)
    np.minimum.at(rep, labels, np.arange(len(labels)))
    out = np.empty(n_comp, dtype=object)
    for comp, node in enumerate(rep):
        col = columns[node_col[node]]
        if col == "customer_id":
            out[comp] = str(values[node])
        else:
            key = f"{col}:{values[node]}"
            out[comp] = "U" + hashlib.sha1(key.encode()).hexdigest()[:16]
    return out


def _distinct_tuples(events: pd.DataFrame, columns: list[str]) -> tuple[np.ndarray, pd.DataFrame]:
    """Code each event by its tuple of identifiers; return codes and one row per tuple.

    Millions of events repeat a few hundred thousand identifier tuples, so the graph is
    built on the tuples. Rows are hashed with polars (multi-threaded), and the result is
    verified value by value, so a hash collision can never merge two tuples.
    """
    import polars as pl

    frame = pl.from_pandas(events[columns].reset_index(drop=True))
    hashes = frame.hash_rows(seed=0).to_numpy()
    codes, _ = pd.factorize(hashes)
    codes = codes.astype(np.int64)
    # factorize numbers tuples in order of first appearance: firsts are new running maxima.
    running = np.maximum.accumulate(codes)
    is_first = np.r_[True, codes[1:] > running[:-1]] if len(codes) else np.zeros(0, bool)
    first = np.flatnonzero(is_first)
    gather = pl.Series(codes[:0].astype(np.int64)) if not len(codes) else pl.Series(first[codes])
    same = all(frame[c].eq_missing(frame[c].gather(gather)).all() for c in columns)
    if not same:  # two tuples share a 64-bit hash: fall back to exact grouping
        codes = (
            events[columns]
            .reset_index(drop=True)
            .groupby(columns, dropna=False, sort=False)
            .ngroup()
            .to_numpy(np.int64)
        )
        first = np.unique(codes, return_index=True)[1]
    return codes, events[columns].iloc[first].reset_index(drop=True)


def _link_frame(frame: pd.DataFrame, columns: list[str], customer_id: str) -> pd.DataFrame:
    """``columns`` of ``frame`` as text (``customer_id`` read from ``customer_id``), null
    where the frame lacks a column, with a fresh index."""
    out = {}
    for c in columns:
        src = customer_id if c == "customer_id" else c
        if src in frame.columns:
            out[c] = frame[src].astype("str").array
        else:
            out[c] = pd.array(np.full(len(frame), None, object), dtype="str")
    return pd.DataFrame(out, index=pd.RangeIndex(len(frame)))


def _resolve_tuples(
    tuples: pd.DataFrame, columns: list[str], max_component_size: int
) -> tuple[np.ndarray, np.ndarray, pd.DataFrame, int]:
    """Resolve distinct identifier tuples: the customer id of each (None where it has no
    identifier at all), whether it carries only cut identifiers, the cut identifiers with
    their links and component size, and the number of identifiers."""
    codes, values, node_col = _node_codes(tuples, columns)
    n = len(values)
    src, dst = _edges(codes)
    labels, cut, cut_from = _guard(n, src, dst, node_col, columns, max_component_size)
    comp_ids = _stable_ids(labels, values, node_col, columns)

    # A tuple belongs to the component of its first identifier that was not cut.
    anchor = np.full(len(tuples), -1, np.int64)
    fallback = np.full(len(tuples), -1, np.int64)
    for j in range(codes.shape[1]):
        c = codes[:, j]
        usable = (c >= 0) & (anchor < 0) & ~cut[np.maximum(c, 0)]
        anchor[usable] = c[usable]
        fb = (c >= 0) & (fallback < 0)
        fallback[fb] = c[fb]
    only_cut = (anchor < 0) & (fallback >= 0)
    anchor = np.where(anchor >= 0, anchor, fallback)
    ids = np.full(len(tuples), None, dtype=object)
    has = anchor >= 0
    ids[has] = comp_ids[labels[anchor[has]]]

    cut_nodes = np.flatnonzero(cut)
    cut_df = pd.DataFrame(
        {
            "column": [columns[node_col[i]] for i in cut_nodes],
            "value": [values[i] for i in cut_nodes],
            "links": np.bincount(np.concatenate([src, dst]), minlength=n)[cut_nodes],
            "component_size": cut_from[cut_nodes],
        }
    ).sort_values("links", ascending=False, ignore_index=True)
    return ids, only_cut, cut_df, n


def resolve_identities(
    events: pd.DataFrame, max_component_size: int = 25, id_columns: list[str] | None = None
) -> tuple[pd.DataFrame, IdentityReport]:
    """Fill ``customer_id`` on every event from linked identifiers; report what was cut."""
    out, _, report = resolve_with_graph(events, None, max_component_size, id_columns)
    return out, report


def resolve_with_graph(
    events: pd.DataFrame,
    graph: pd.DataFrame | None,
    max_component_size: int = 25,
    id_columns: list[str] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, IdentityReport]:
    """Resolve ``events`` together with the identity graph of events loaded before.

    ``graph`` holds distinct tuples of raw identifiers (``customer_id`` as the source
    gave it, and the identifier columns). Returns the events with ``customer_id``
    filled, the new graph (old tuples and the events' tuples, each with the customer id
    it resolves to in ``resolved_id``) and the report. Resolution depends only on the
    set of tuples, not on how often or in which order they occur, so resolving a log in
    pieces against the growing graph gives every event the id one pass over the whole
    log gives.
    """
    if max_component_size < 2:
        raise ValueError(f"max_component_size must be >= 2, got {max_component_size}")
    columns = ["customer_id", *(id_columns or IDENTIFIER_COLUMNS)]
    batch = _link_frame(events, columns, "customer_id")
    if graph is not None and len(graph):
        batch = pd.concat([batch, _link_frame(graph, columns, "customer_id")], ignore_index=True)
    tuple_of_row, tuples = _distinct_tuples(batch, columns)
    tuple_of_event = tuple_of_row[: len(events)]
    ids, only_cut, cut_df, _ = _resolve_tuples(
        tuples.astype(object).where(tuples.notna(), None), columns, max_component_size
    )
    linked = ~pd.isna(ids)
    if not linked[tuple_of_event].all():
        row = int(np.flatnonzero(~linked[tuple_of_event])[0]) + 1
        why = f"events row {row}: no customer_id and no identifier to resolve"
        raise UnresolvableEventError(why)
    used = np.unique(tuple_of_event)
    code_of_tuple = np.full(len(tuples), -1, np.int64)
    code_of_tuple[used], uniques = pd.factorize(ids[used])
    out = events.copy(deep=False)
    out["customer_id"] = pd.Categorical.from_codes(
        code_of_tuple[tuple_of_event], categories=pd.Index(uniques, dtype="str")
    )

    seen = tuples.iloc[used]
    report = IdentityReport(
        n_events=len(events),
        n_identifiers=int(seen.nunique().sum()),
        n_customers=len(uniques),
        n_known_customers=int(seen["customer_id"].nunique()),
        cut_identifiers=cut_df,
        n_events_only_cut=int(only_cut[tuple_of_event].sum()),
    )
    new_graph = tuples[linked].reset_index(drop=True)
    new_graph[RESOLVED] = pd.array(ids[linked], dtype="str")
    return out, new_graph, report


def graph_lookup(
    graph: pd.DataFrame, frame: pd.DataFrame, customer_id: str = "customer_id"
) -> np.ndarray:
    """The resolved customer id of each row of ``frame`` by its tuple of raw identifiers
    (raw customer id read from column ``customer_id``); None where the graph lacks it."""
    columns = [c for c in graph.columns if c != RESOLVED]
    rows = _link_frame(frame, columns, customer_id)
    both = pd.concat([_link_frame(graph, columns, "customer_id"), rows], ignore_index=True)
    code, _ = _distinct_tuples(both, columns)
    lookup = np.full(int(code.max(initial=-1)) + 1, None, dtype=object)
    lookup[code[: len(graph)]] = graph[RESOLVED].to_numpy(object)
    return lookup[code[len(graph) :]]


@dataclass(frozen=True)
class MergeQuality:
    """Pairwise precision / recall of predicted customers against true persons (event pairs)."""

    precision: float
    recall: float

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


def merge_quality(predicted: pd.Series | np.ndarray, truth: pd.Series | np.ndarray) -> MergeQuality:
    """Pairwise precision / recall: of event pairs put together, how many truly belong so."""
    pred = pd.factorize(np.asarray(predicted))[0].astype(np.int64)
    true = pd.factorize(np.asarray(truth))[0].astype(np.int64)

    def pairs(counts: np.ndarray) -> float:
        c = counts.astype(np.float64)
        return float((c * (c - 1) / 2).sum())

    joint = np.unique(pred * (true.max(initial=0) + 1) + true, return_counts=True)[1]
    tp = pairs(joint)
    pred_pairs = pairs(np.bincount(pred))
    true_pairs = pairs(np.bincount(true))
    return MergeQuality(
        precision=tp / pred_pairs if pred_pairs else 1.0,
        recall=tp / true_pairs if true_pairs else 1.0,
    )
