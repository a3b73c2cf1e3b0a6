"""The store's recent events as the online state keeps them: encoded, one run per customer.

A refresh reads the events of the customers it recomputes, a few thousand runs out of
all of them. Held as a pandas frame with every contract column (text as Python-backed
strings), a year of synthetic history took about 70 KB of the refresh process's memory a
customer. Here only the columns the feature builder and the recommender read
(``BUILDER_COLUMNS``) are kept, each as the smallest integer codes into its distinct
values (text values in one Arrow array; timestamps as 32-bit seconds when they are whole
seconds), sorted by customer with each customer's start and end; a refresh decodes its
customers' rows only, into the frame :func:`features.store.events.read_events` would give,
but for the customer, product and store ids: categoricals over the values held, which
their readers look up once each instead of once a row.
"""

from __future__ import annotations

import copy
import mmap
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.contract.schema import CHANNELS, EVENT_TYPES
from serving.live.id_set import EventIdSet
from training.recs.data import BUILDER_COLUMNS
from training.recs.tables import positions_in, rank_within, run_starts

TEXT = ("order_id", "product_id", "store_id")
NUMBERS = ("quantity", "amount", "discount")
CATEGORIES = {"channel": CHANNELS, "event_type": EVENT_TYPES}
AS_CATEGORIES = ("product_id", "store_id")
"""Text columns a refresh's events carry as categoricals over the state's values: their
readers (the feature builders' ``factorize``, the catalogue's look-ups) then work on the
distinct values, not on every row's string. Order ids stay text: nearly every one is
new, and they are only grouped."""
COLUMNS = (*BUILDER_COLUMNS, "event_id")
"""What is read from the store: the columns the builders read, and the ids (for duplicates)."""
US = 1_000_000
_EMPTY = pd.DataFrame(
    {
        "customer_id": pd.Series([], dtype="str"),
        "ts": pd.Series([], dtype="datetime64[us, UTC]"),
        **{name: pd.Categorical([], categories=list(v)) for name, v in CATEGORIES.items()},
        **{name: pd.Series([], dtype="str") for name in (*TEXT, "event_id")},
        **{name: pd.Series([], dtype=np.float64) for name in NUMBERS},
    }
)


@dataclass
class _Encoded:
    """Events as codes (in row order, not yet sorted): ``cust`` and ``codes`` index
    ``values`` (-1: missing), ``ts`` in UTC microseconds."""

    cust: np.ndarray
    ts: np.ndarray
    codes: dict[str, np.ndarray]
    values: dict[str, pd.Index]  # customer_id, TEXT and NUMBERS: the distinct values
    event_ids: EventIdSet


def encode(events: pd.DataFrame) -> _Encoded:
    """Contract events (customer ids and event ids present) as codes (see
    :class:`_Encoded`)."""
    missing = [c for c in COLUMNS if c not in events.columns]
    if missing:
        raise ValueError(f"stored events lack column(s): {', '.join(missing)}")
    if events["customer_id"].isna().any():
        raise ValueError("stored events need a customer_id (resolved) on every row")
    codes, values = {}, {}
    for name in ("customer_id", *TEXT, *NUMBERS):
        code, values[name] = pd.factorize(events[name])
        codes[name] = code.astype(_code_type(len(values[name])))
    for name, allowed in CATEGORIES.items():
        column = events[name]
        if not isinstance(column.dtype, pd.CategoricalDtype) or tuple(
            column.cat.categories
        ) != tuple(allowed):
            raise ValueError(f"stored events' {name} must be the contract's categorical")
        codes[name] = column.cat.codes.to_numpy().astype(np.int8)
    ts = events["ts"].to_numpy("datetime64[us]").view(np.int64)
    event_ids = EventIdSet.of(events["event_id"])
    return _Encoded(codes.pop("customer_id"), ts, codes, values, event_ids)


class StoredEvents:
    """Encoded events sorted by customer (see the module doc): :meth:`of` decodes the rows
    of some customers; :meth:`with_events` adds more.

    The rows are two layers of :class:`_Runs`: the store's as read (``_base``), which
    nothing changes once arranged and :meth:`mapped` can hand to a file's pages, and the
    events added since (``_added``), which :meth:`with_events` sorts again with the new
    ones. A fold of live events then costs what was added since start, not the whole
    store: 8 successive folds of 50,000 into the 2M events of 20,000 customers took
    115-207 ms each when every row was sorted again, 63-99 ms now; the part that grew
    with the store (~60-100 ms per 2M events) would be seconds at 1M customers. Reading
    a customer's rows from two layers costs ~3 ms more per 1,000 customers (~87,000
    rows: 10-11 ms against 7-8).
    """

    def __init__(self, parts: Sequence[_Encoded]) -> None:
        """One sorted whole of encoded ``parts`` (their codes mapped onto shared values)."""
        parts = list(parts) or [encode(_EMPTY)]
        ids = _union([p.values["customer_id"] for p in parts]).sort_values()
        cust = _remapped(parts, "customer_id", ids, lambda p: p.cust)
        codes: dict[str, np.ndarray] = {}
        values: dict[str, pa.Array | np.ndarray] = {}
        for name in (*TEXT, *NUMBERS):
            union = _union([p.values[name] for p in parts])
            codes[name] = _remapped(parts, name, union, lambda p, n=name: p.codes[n])
            values[name] = (
                pa.array(union.to_numpy(dtype=object), pa.string())
                if name in TEXT
                else union.to_numpy(dtype=np.float64)
            )
        for name in CATEGORIES:
            codes[name] = np.concatenate([p.codes[name] for p in parts])
        ts = np.concatenate([p.ts for p in parts])
        self._base = _Runs.arranged(ids.to_numpy(dtype=object), cust, ts, codes)
        self._added = _no_runs()
        self._hold_values(values)
        self.event_ids = EventIdSet.union([p.event_ids for p in parts])

    def _hold_values(self, values: dict[str, pa.Array | np.ndarray]) -> None:
        """Take ``values`` as the columns' distinct values (:data:`AS_CATEGORIES`' as
        categories too)."""
        self._values = values
        self._dtypes: dict[str, pd.CategoricalDtype] = {
            name: pd.CategoricalDtype(pd.Index(values[name], dtype="str")) for name in AS_CATEGORIES
        }

    @classmethod
    def read(cls, store_dir: Path, start: pd.Timestamp) -> StoredEvents:
        """The store's events from ``start`` on with a customer id (read and encoded a
        batch at a time: the whole never sits in memory as a frame), and the ids of all
        of them: the set the worker checks duplicates against too (``id_set.share``)."""
        from features.store.events import map_event_batches

        def batch(events: pd.DataFrame) -> _Encoded:
            named = events["customer_id"].notna().to_numpy()
            part = encode(events[named])
            if not named.all():
                part.event_ids = EventIdSet.of(events["event_id"])
            return part

        stored = cls(map_event_batches(store_dir, batch, start=start, columns=list(COLUMNS)))
        pa.default_memory_pool().release_unused()  # the batches' buffers back to the system
        return stored

    @classmethod
    def of_frame(cls, events: pd.DataFrame) -> StoredEvents:
        """``events`` (contract frame, customer ids and event ids present) encoded."""
        return cls([encode(events)])

    def __len__(self) -> int:
        return len(self._base) + len(self._added)

    @property
    def n_added(self) -> int:
        """Rows added since the store's were read (:meth:`with_events`)."""
        return len(self._added)

    @property
    def nbytes(self) -> int:
        """Bytes of the arrays, mapped ones and event ids included (the customer ids'
        strings left out)."""
        values = sum(v.nbytes for v in self._values.values())
        return self._base.nbytes + self._added.nbytes + values + self.event_ids.nbytes

    def mapped(self, directory: Path | None = None) -> StoredEvents:
        """These events with the store's rows (``_base``: their codes, times and runs, 30
        bytes an event in the benchmark homes) in a file unlinked from the start in
        ``directory`` (default: the system's temporary one), mapped read-only. Their pages
        are the file's: the system reads in those that refreshes touch and, short of
        memory, drops them rather than swapping (a tmpfs keeps them in memory). The
        values and the added rows stay in the process."""
        out = copy.copy(self)
        out._base = self._base.mapped(directory)
        return out

    def with_events(self, events: pd.DataFrame) -> StoredEvents:
        """These events and ``events`` (contract frame, customer ids and event ids
        present) in one. The new rows' distinct values are looked up among the held ones
        (text by Arrow's hash of it), then the rows added so far and the new ones are
        sorted again as one layer; the store's rows are kept as they are."""
        new = encode(events)
        added = self._added
        cust_ids, old_cust, new_cust = _merged_ids(added.ids, new.values["customer_id"])
        held_cust = np.repeat(old_cust, added.ends - added.starts)
        cust = np.concatenate([held_cust, new_cust[new.cust]]).astype(_code_type(len(cust_ids)))
        codes: dict[str, np.ndarray] = {}
        values: dict[str, pa.Array | np.ndarray] = {}
        for name in (*TEXT, *NUMBERS):
            values[name], to = _appended(self._values[name], new.values[name])
            code_type = _code_type(len(values[name]))
            new_codes = np.append(to, -1).astype(code_type)[new.codes[name]]  # -1 stays -1
            held_codes = added.codes[name].astype(code_type, copy=False)
            codes[name] = np.concatenate([held_codes, new_codes])
        for name in CATEGORIES:
            codes[name] = np.concatenate([added.codes[name], new.codes[name]])
        ts = np.concatenate([added.micros(), new.ts])
        out = copy.copy(self)
        out._added = _Runs.arranged(cust_ids, cust, ts, codes)
        out._hold_values(values)
        out.event_ids = EventIdSet.union([self.event_ids, new.event_ids])
        return out

    def customers_since(self, t: pd.Timestamp) -> pd.Index:
        """Customers with an event at or after ``t``."""
        ids = [layer.customers_since(t) for layer in (self._base, self._added)]
        return pd.Index(np.unique(np.concatenate(ids)), dtype="str")

    def of(self, customer_ids: pd.Index, more: pd.DataFrame | None = None) -> pd.DataFrame:
        """The events of these customers (``BUILDER_COLUMNS``), each customer's rows
        together (the store's, then those added since), then ``more`` (events of theirs
        not stored, e.g. live ones): the dtypes of a store read, but ``customer_id``
        (categories: ``customer_ids``) and :data:`AS_CATEGORIES` as categoricals (see the
        module doc). Values of ``more`` the state lacks join the categories for good (a
        product new since it was read)."""
        customer_ids = pd.Index(customer_ids, dtype="str").unique()
        customers = pd.CategoricalDtype(customer_ids)
        more = self._as_categories(more, customers) if more is not None and len(more) else None
        asked = customer_ids.to_numpy(dtype=object)
        picks = [(layer, *layer.rows_of(asked)) for layer in (self._base, self._added)]
        picks = [pick for pick in picks if len(pick[1])] or picks[:1]
        at = _together([of for _, _, of in picks], len(asked)) if len(picks) > 1 else None
        owner = _placed([of for _, _, of in picks], at)
        frame = self._frame(picks, at, pd.Categorical.from_codes(owner, dtype=customers))
        return frame if more is None else pd.concat([frame, more], ignore_index=True)

    def _as_categories(self, more: pd.DataFrame, customers: pd.CategoricalDtype) -> pd.DataFrame:
        """``more``'s builder columns, its customer ids as categories ``customers`` and
        its :data:`AS_CATEGORIES` as the state's, which learn the values they lack (each
        column's text looked up once, and again only where it was new)."""
        more = more[list(BUILDER_COLUMNS)].copy(deep=False)
        for name, dtype in [("customer_id", customers), *self._dtypes.items()]:
            text = more[name]
            codes = dtype.categories.get_indexer(text)
            lacking = (codes < 0) & text.notna().to_numpy()
            if lacking.any():
                if name not in self._dtypes:
                    raise ValueError(f"more events hold a {name} not among the asked ones")
                dtype = self._learn(name, text[lacking])
                codes[lacking] = dtype.categories.get_indexer(text[lacking])
            more[name] = pd.Categorical.from_codes(codes, dtype=dtype)
        return more

    def _learn(self, name: str, new: pd.Series) -> pd.CategoricalDtype:
        """Append the distinct values of ``new`` (none of them known) to column ``name``'s
        values and categories (the stored codes keep their meaning); its new dtype."""
        known = self._dtypes[name].categories
        added = pa.array(np.asarray(pd.unique(new), dtype=object), pa.string())
        self._values[name] = pa.concat_arrays([self._values[name], added])
        self._dtypes[name] = pd.CategoricalDtype(known.append(pd.Index(added, dtype="str")))
        return self._dtypes[name]

    def _frame(
        self, picks: list[tuple[_Runs, np.ndarray, np.ndarray]], at: list[np.ndarray] | None,
        customer_ids: pd.Categorical,
    ) -> pd.DataFrame:  # fmt: skip
        """The rows each layer's pick names, decoded and placed ``at`` (see
        :func:`_placed`), their customer ids given."""

        def column(of_layer) -> np.ndarray:
            return _placed([of_layer(layer, rows) for layer, rows, _ in picks], at)

        ts = column(lambda layer, rows: layer.micros(rows))
        out = {
            "customer_id": pd.Series(customer_ids),
            "ts": pd.Series(ts.view("datetime64[us]")).dt.tz_localize("UTC"),
        }
        codes = {
            name: column(lambda layer, rows, n=name: layer.codes[n][rows])
            for name in (*CATEGORIES, *TEXT, *NUMBERS)
        }
        for name, allowed in CATEGORIES.items():
            dtype = pd.CategoricalDtype(list(allowed))
            out[name] = pd.Series(pd.Categorical.from_codes(codes[name], dtype=dtype))
        for name in TEXT:
            if name in self._dtypes:
                dtype = self._dtypes[name]
                out[name] = pd.Series(pd.Categorical.from_codes(codes[name], dtype=dtype))
                continue
            taken = self._values[name].take(pa.array(codes[name], mask=codes[name] < 0))
            out[name] = pd.Series(taken, dtype="str")
        for name in NUMBERS:
            values = self._values[name]
            out[name] = np.where(
                codes[name] >= 0, values[np.maximum(codes[name], 0)] if len(values) else 0, np.nan
            )
        return pd.DataFrame({name: out[name] for name in BUILDER_COLUMNS})  # in their order


@dataclass
class _Runs:
    """Rows sorted by customer: ``ids`` (sorted) and each one's run of rows
    (``starts``, ``ends``); per row, the time (``ts`` units of ``ts_step`` microseconds
    after ``ts_base``) and the codes into the values of :class:`StoredEvents`."""

    ids: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    ts: np.ndarray
    ts_base: int
    ts_step: int
    codes: dict[str, np.ndarray]

    @classmethod
    def arranged(
        cls, ids: np.ndarray, cust: np.ndarray, ts: np.ndarray, codes: dict[str, np.ndarray]
    ) -> _Runs:
        """Rows given in any order (``cust``: codes into the sorted ``ids``; ``ts``: UTC
        microseconds) sorted by customer, each run in the given order. ``codes``' arrays
        are replaced one by one as they are sorted (the peak holds one column twice)."""
        order = np.argsort(cust, kind="stable")
        cust = cust[order]
        starts = np.flatnonzero(run_starts(cust))
        ends = np.append(starts[1:], len(cust)).astype(np.int64)
        del cust
        ts = ts[order]
        whole = len(ts) == 0 or (
            not (ts % US).any() and (ts.max() - ts.min()) // US < np.iinfo(np.int32).max
        )
        base = int(ts.min()) if len(ts) else 0
        step = US if whole else 1
        ts = ((ts - base) // step).astype(np.int32 if whole else np.int64)
        for name in list(codes):
            codes[name] = codes[name][order]
        return cls(ids, starts.astype(np.int64), ends, ts, base, step, codes)

    def __len__(self) -> int:
        return len(self.ts)

    @property
    def nbytes(self) -> int:
        arrays = [self.starts, self.ends, self.ts, *self.codes.values()]
        return sum(a.nbytes for a in arrays) + 8 * len(self.ids)

    def rows_of(self, asked: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The rows of the customers ``asked`` (ids, any order; unknown ones skipped), each
        one's run together, and each row's position in ``asked``."""
        at, found = positions_in(self.ids, asked)
        runs = at[found]
        starts, ends = self.starts[runs], self.ends[runs]
        lengths = ends - starts
        rows = np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(lengths.sum())
        return rows, np.repeat(np.flatnonzero(found), lengths)

    def micros(self, rows: np.ndarray | slice = slice(None)) -> np.ndarray:
        """Timestamps of rows ``rows`` (every row by default) as UTC microseconds."""
        return self.ts[rows].astype(np.int64) * self.ts_step + self.ts_base

    def customers_since(self, t: pd.Timestamp) -> np.ndarray:
        """Ids of the customers with a row at or after ``t``."""
        at = (t.value // 1_000 - self.ts_base) / self.ts_step
        rows = np.flatnonzero(self.ts >= at)
        return self.ids[np.unique(np.searchsorted(self.starts, rows, side="right") - 1)]

    def mapped(self, directory: Path | None) -> _Runs:
        """These runs with their arrays (not the ids) in one file unlinked from the start,
        mapped read-only (see :meth:`StoredEvents.mapped`)."""
        arrays = {"starts": self.starts, "ends": self.ends, "ts": self.ts, **self.codes}
        at, offset = {}, 0
        for name, array in arrays.items():
            at[name] = offset
            offset += -(-array.nbytes // 64) * 64  # each array on a 64-byte boundary
        if offset == 0:
            return self
        with tempfile.TemporaryFile(dir=directory) as file:
            for name, array in arrays.items():
                file.seek(at[name])
                file.write(np.ascontiguousarray(array).data)
            file.truncate(offset)
            file.flush()
            pages = mmap.mmap(file.fileno(), offset, prot=mmap.PROT_READ)  # its own descriptor
        views = {
            name: np.frombuffer(pages, a.dtype, count=len(a), offset=at[name])
            for name, a in arrays.items()
        }
        codes = {name: views[name] for name in self.codes}
        return replace(
            self, starts=views["starts"], ends=views["ends"], ts=views["ts"], codes=codes
        )


def _together(owners: list[np.ndarray], n: int) -> list[np.ndarray]:
    """Where each layer's rows go when each customer's rows come together, the first
    layer's before the next's: ``owners`` gives each layer's rows' customer (0..n-1, the
    rows grouped by customer in the order asked). A scatter, cheaper than a stable sort."""
    counts = [np.bincount(owner, minlength=n) for owner in owners]
    together = sum(counts)
    first = np.cumsum(together) - together  # where each customer's rows begin
    out, before = [], np.zeros(n, np.int64)
    for owner, count in zip(owners, counts, strict=True):
        out.append(first[owner] + before[owner] + rank_within(owner))
        before += count
    return out


def _placed(parts: list[np.ndarray], at: list[np.ndarray] | None) -> np.ndarray:
    """``parts`` in one array, each part's values at the positions ``at`` gives (None: the
    one part as it is)."""
    if at is None:
        return parts[0]
    out = np.empty(sum(len(p) for p in parts), np.result_type(*parts))
    for part, where in zip(parts, at, strict=True):
        out[where] = part
    return out


def _no_runs() -> _Runs:
    """Runs of no rows."""
    codes = {name: np.zeros(0, np.int8) for name in (*TEXT, *NUMBERS, *CATEGORIES)}
    return _Runs.arranged(np.zeros(0, object), np.zeros(0, np.int8), np.zeros(0, np.int64), codes)


def _merged_ids(held: np.ndarray, new: pd.Index) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The sorted customer ids ``held`` and ``new`` together, and where each of ``held``
    and of ``new`` is in them (``held`` sorted already: a binary search, no hash of it)."""
    text = new.to_numpy(dtype=object)
    at, found = positions_in(held, text)
    if found.all():
        return held, np.arange(len(held)), at
    added = np.sort(text[~found])
    before = np.searchsorted(held, added)  # where each added id goes among the held
    held_to = np.arange(len(held)) + np.searchsorted(before, np.arange(len(held)), side="right")
    ids = np.insert(held, before, added)
    return ids, held_to, np.searchsorted(ids, text)


def _appended(
    held: pa.Array | np.ndarray, new: pd.Index
) -> tuple[pa.Array | np.ndarray, np.ndarray]:
    """``held`` (distinct values: Arrow text or float64) with the values of ``new`` it
    lacks appended, and each of ``new``'s position in the result. ``held`` keeps its
    positions."""
    if isinstance(held, pa.Array):
        text = pa.array(new.to_numpy(dtype=object), pa.string())
        at = pc.index_in(text, value_set=held)
        lacking = at.is_null().to_numpy(zero_copy_only=False)
        to = at.fill_null(-1).to_numpy().astype(np.int64)
        appended = pa.concat_arrays([held, text.filter(pa.array(lacking))])
    else:
        to = pd.Index(held).get_indexer(new)
        lacking = to < 0
        appended = np.concatenate([held, new.to_numpy(dtype=np.float64)[lacking]])
    to[lacking] = len(held) + np.arange(lacking.sum())
    return appended, to


def _union(indexes: list[pd.Index]) -> pd.Index:
    """The distinct values of ``indexes``, in the order they first appear."""
    if not indexes:
        return pd.Index([], dtype="str")
    return indexes[0].append(indexes[1:]).unique() if len(indexes) > 1 else indexes[0]


def _remapped(parts, name: str, values: pd.Index, codes_of) -> np.ndarray:
    """The parts' codes of column ``name`` (``codes_of(part)``) as codes into ``values``,
    concatenated, in the smallest integer type (-1 stays -1)."""
    code_type = _code_type(len(values))
    out = []
    for p in parts:  # a part is a batch of a million rows: a few hundred at most
        to = np.append(values.get_indexer(p.values[name]), -1).astype(code_type)
        out.append(to[codes_of(p)])  # code -1 takes the appended -1
    return np.concatenate(out)


def _code_type(n: int) -> type:
    """The smallest signed integer type that holds codes 0..n-1 and -1."""
    for t in (np.int8, np.int16, np.int32):
        if n <= np.iinfo(t).max:
            return t
    return np.int64
