"""Customer features as of a cutoff: recency, frequency, monetary, channel mix, store visits.

``build_customer_features(events, customers, as_of)`` is the one definition used by
training, batch scoring and serving. It returns one row per customer (index
``customer_id``, sorted) with exactly the columns of
:func:`features.registry.customer_features`, in order, with their dtypes. The
point-in-time and missing-value rules are in :mod:`features.registry`.

Every family is a handful of grouped operations over the whole event log: counts per
(cell, window band, customer) are one compiled pass (:mod:`features.cells`), last-seen
times another, distinct days / stores / orders one sort of integer keys. The purchase
families run on a helper thread beside the engagement ones (:mod:`features.threads`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Executor

import numpy as np
import pandas as pd

from features import cells, threads
from features import kernels as k
from features.cut import Cut, ages, cut
from features.encode import DAY_US, UNKNOWN_TS, EncodedEvents, encode_events
from features.memory import reuse_freed_memory
from features.registry import (
    DEFAULT_WINDOWS,
    ENGAGEMENT_TYPES,
    SALES_CHANNELS,
    Feature,
    customer_features,
    window_pairs,
)
from features.schema import CHANNELS, EVENT_TYPES, ONLINE_CHANNELS, OUTREACH_CHANNELS

N_CH, N_ET = len(CHANNELS), len(EVENT_TYPES)
CH = {c: i for i, c in enumerate(CHANNELS)}
ET = {e: i for i, e in enumerate(EVENT_TYPES)}
_ENGAGE = np.isin(np.arange(N_ET), [ET[e] for e in ENGAGEMENT_TYPES])
_RESPONSES = ("open", "click", "redeem")


Progress = Callable[[str], None]
N_STEPS = 9
"""Progress callbacks a build makes (one per step), for progress bars."""


def build_customer_features(
    events: pd.DataFrame,
    customers: pd.DataFrame | None = None,
    as_of: pd.Timestamp | str | None = None,
    windows: Sequence[int] = DEFAULT_WINDOWS,
    progress: Progress | None = None,
) -> pd.DataFrame:
    """One row per customer as of ``as_of`` (exclusive), from contract frames.

    ``events`` / ``customers`` are contract frames (see :mod:`features.schema`);
    ``customers`` is optional. ``progress`` is called with a label after each step,
    from either of the build's threads (rich's progress bars are thread-safe).
    """
    if as_of is None:
        raise ValueError("as_of is required: features are always as of a cutoff")
    with reuse_freed_memory(), threads.helper() as helper:
        enc = encode_events(events, customers, helper)
        if progress:
            progress("encoded events")
        return _build(enc, as_of, windows, progress, helper)


def features_from_encoded(
    enc: EncodedEvents,
    as_of: pd.Timestamp | str,
    windows: Sequence[int] = DEFAULT_WINDOWS,
    progress: Progress | None = None,
) -> pd.DataFrame:
    """Customer features from already encoded events (snapshots encode once)."""
    with reuse_freed_memory(), threads.helper() as helper:
        return _build(enc, as_of, windows, progress, helper)


def _build(
    enc: EncodedEvents,
    as_of: pd.Timestamp | str,
    windows: Sequence[int],
    progress: Progress | None,
    helper: Executor | None,
) -> pd.DataFrame:
    """Cut, the families (the purchase ones on the helper thread), attributes, table."""
    tick = progress or (lambda _: None)
    c = cut(enc, as_of, windows, helper)
    pair = c.channel.astype(np.int16) * N_ET + c.event_type
    if helper is None:
        cols = _engagement_families(c, pair, tick) | _purchase_families(c, tick)
    else:
        purchases = helper.submit(_purchase_families, c, tick)
        cols = _engagement_families(c, pair, tick)
        cols |= purchases.result()
    cols |= _attributes(c)
    out = assemble(cols, customer_features(c.windows), c.ids)
    tick("assembled the table")
    return out


def _engagement_families(c: Cut, pair: np.ndarray, tick: Progress) -> dict[str, np.ndarray]:
    """Event counts, channel mix, online days and store visits (independent of orders)."""
    cols = _event_counts(c)
    tick("event counts per window")
    cols |= _channel_counts(c)
    tick("channel mix and response rates")
    cols |= _online_days(c, pair)
    tick("online days")
    cols |= _store_visits(c, pair)
    tick("store visits")
    return cols


def _purchase_families(c: Cut, tick: Progress) -> dict[str, np.ndarray]:
    """Recency, then orders (which need the last purchase), then money (which needs them)."""
    cols: dict[str, np.ndarray] = {}
    last = _recency(c, cols)
    tick("recency")
    orders = _Orders(c)
    cols |= orders.features(last)
    tick("orders and purchase gaps")
    cols |= _money(c, orders)
    tick("spend, returns, discounts")
    return cols  # orders' per-line arrays are freed here


def assemble(cols: dict[str, np.ndarray], spec: Sequence[Feature], index: pd.Index) -> pd.DataFrame:
    """Columns in registry order with registry dtypes; fails loudly on any mismatch."""
    missing = [f.name for f in spec if f.name not in cols]
    extra = sorted(set(cols) - {f.name for f in spec})
    if missing or extra:
        raise RuntimeError(f"builder and registry disagree: missing {missing}, extra {extra}")
    data = {f.name: np.asarray(cols[f.name]).astype(f.dtype, copy=False) for f in spec}
    if index.nlevels == 1 and index.name is None:
        index = index.rename("customer_id")
    return pd.DataFrame(data, index=index, copy=False)


def _by_cell(c: Cut, cell_of: np.ndarray) -> np.ndarray:
    """int32 events per (cell, customer) over the whole lookback, shape (cells, width)."""
    no_bands = np.zeros(c.lookback, dtype=np.int8)
    return cells.count(c.code, c.channel, c.event_type, c.day, cell_of, no_bands, N_ET, c.width)


def _lut(table: dict[tuple[int, int], int], default: int) -> np.ndarray:
    """A (channel, event_type) -> cell lookup table over ``channel * N_ET + event_type``.

    int16: a lookup per event writes 2 bytes, not 8 (keys widen in :func:`_grouped`).
    """
    lut = np.full(N_CH * N_ET, default, dtype=np.int16)
    for (ch, et), cell in table.items():
        lut[ch * N_ET + et] = cell
    return lut


# Grouped arrays are group-major: key = group * c.width + customer code, so that each
# output column is one contiguous row of the result and windows are cumulative sums
# over whole rows.


def _grouped(c: Cut, group: np.ndarray, code: np.ndarray, n_groups: int, weights=None):
    """Counts (int32) or sums (float64) per (group, customer), shape (n_groups, width)."""
    key = _keys(group, c.width, code, n_groups * c.width)
    return k.accumulate(key, n_groups * c.width, weights).reshape(n_groups, c.width)


def _keys(group: np.ndarray, width: int, code: np.ndarray, size: int) -> np.ndarray:
    """``group * width + code``, int32 when every key of ``0 .. size - 1`` fits (half
    the memory to fault in and to read), else int64."""
    dtype = np.int32 if size <= np.iinfo(np.int32).max else np.int64
    key = np.multiply(group, width, dtype=dtype)
    np.add(key, code, out=key, casting="same_kind")
    return key


def _windows(per_band: np.ndarray, dtype) -> np.ndarray:
    """(..., band, width) -> (..., window, width): bands are disjoint, windows nested.

    In place when ``per_band`` already has ``dtype``. (Whole-row adds: several times
    faster than ``np.cumsum`` along a middle axis.)
    """
    out = per_band.astype(dtype, copy=False)
    for j in range(1, out.shape[-2]):
        out[..., j, :] += out[..., j - 1, :]
    return out


# ---------------------------------------------------------------- frequency (windowed)
_W_CELLS = ("views", "messages", "opens", "clicks", "other_engagements")
_W_LUT = _lut(
    {
        (ch, et): (
            0
            if et == ET["view"]
            else 1
            if et == ET["message_sent"]
            else 2
            if et == ET["open"]
            else 3
            if et == ET["click"]
            else 4
            if _ENGAGE[et]
            else len(_W_CELLS)
        )
        for ch in range(N_CH)
        for et in range(N_ET)
    },
    len(_W_CELLS),
)


def _event_counts(c: Cut) -> dict[str, np.ndarray]:
    """Views, messages, opens, clicks and engagements per window, in one grouped count."""
    nb, nc, n = len(c.windows), len(_W_CELLS) + 1, c.n
    band_of = c.band_of_day(np.arange(c.lookback))
    per = cells.count(c.code, c.channel, c.event_type, c.day, _W_LUT, band_of, N_ET, c.width)
    per = per.reshape(nc, nb, c.width)
    win = _windows(per[: nc - 1], np.int32)  # (cell, window, width)
    out = {}
    for i, name in enumerate(_W_CELLS[:-1]):
        for j, d in enumerate(c.windows):
            out[f"{name}_{d}d"] = win[i, j, :n]
    engaged = win[0] + win[2] + win[3] + win[4]
    for j, d in enumerate(c.windows):
        out[f"engagements_{d}d"] = engaged[j, :n]
    for a, b in window_pairs(c.windows):
        ia, ib = c.windows.index(a), c.windows.index(b)
        out[f"engagements_trend_{a}d_{b}d"] = k.ratio(
            engaged[ia, :n], engaged[ib, :n], np.nan, scale=b / a
        )
    return out


# ---------------------------------------------------------------- channel mix (lookback)
_C_OTHER = N_CH + 4 * len(OUTREACH_CHANNELS)


def _channel_cell(ch: int, et: int) -> int:
    name = CHANNELS[ch]
    if name in OUTREACH_CHANNELS:
        i = OUTREACH_CHANNELS.index(name)
        kinds = ("message_sent", *_RESPONSES)
        if EVENT_TYPES[et] in kinds:
            return N_CH + kinds.index(EVENT_TYPES[et]) * len(OUTREACH_CHANNELS) + i
    return ch if _ENGAGE[et] else _C_OTHER


_C_LUT = _lut({(ch, et): _channel_cell(ch, et) for ch in range(N_CH) for et in range(N_ET)}, 0)


def _channel_counts(c: Cut) -> dict[str, np.ndarray]:
    """Engagement shares per channel and response rates per outreach channel."""
    n, n_out = c.n, len(OUTREACH_CHANNELS)
    per = _by_cell(c, _C_LUT)[:, :n]
    sent, opens, clicks, redeems = (
        per[N_CH + i * n_out : N_CH + (i + 1) * n_out] for i in range(4)
    )
    engaged = per[:N_CH].copy()
    for i, ch in enumerate(OUTREACH_CHANNELS):
        engaged[CH[ch]] += opens[i] + clicks[i] + redeems[i]
    total = engaged.sum(axis=0)
    out = {
        f"share_engagements_{ch}": k.ratio(engaged[i], total, 0.0) for i, ch in enumerate(CHANNELS)
    }
    for i, ch in enumerate(OUTREACH_CHANNELS):
        out[f"messages_{ch}"] = sent[i].copy()  # do not keep the whole count block alive
        for resp, got in zip(_RESPONSES, (opens, clicks, redeems), strict=True):
            out[f"{resp}_rate_{ch}"] = k.ratio(got[i], sent[i], np.nan)
    return out


# ---------------------------------------------------------------- recency
_R_OTHER = 2 * N_CH
_R_LUT = _lut(
    {
        (ch, et): ch * 2 + (0 if et == ET["purchase"] else 1)
        for ch in range(N_CH)
        for et in range(N_ET)
        if et == ET["purchase"] or _ENGAGE[et]
    },
    _R_OTHER,
)


def _recency(c: Cut, out: dict[str, np.ndarray]) -> np.ndarray:
    """Days since the last purchase / engagement, overall, per channel, store and online.

    Returns the age of the last purchase in seconds (for the overdue ratio).
    """
    n, nr = c.n, _R_OTHER + 1
    no_bands = np.zeros(c.lookback, dtype=np.int8)
    last = cells.minimum(
        c.code, c.channel, c.event_type, c.day, c.age, _R_LUT, no_bands, N_ET, c.width, k.NEVER
    )
    last = last.reshape(nr, c.width)[:, :n]
    purchase, engaged = last[0:_R_OTHER:2], last[1:_R_OTHER:2]  # (channel, customer)
    per_channel = np.minimum(purchase, engaged)
    cap = float(c.lookback)
    last_purchase = purchase.min(axis=0)
    out["days_since_last_purchase"] = k.days(last_purchase, cap)
    out["days_since_last_engagement"] = k.days(engaged.min(axis=0), cap)
    out["days_since_last_store_visit"] = k.days(per_channel[CH["store"]], cap)
    online = np.minimum.reduce([per_channel[CH[ch]] for ch in ONLINE_CHANNELS])
    out["days_since_last_online"] = k.days(online, cap)
    for i, ch in enumerate(CHANNELS):
        out[f"days_since_last_{ch}"] = k.days(per_channel[i], cap)
    out["n_channels"] = (per_channel < k.NEVER).sum(axis=0, dtype=np.int8)
    return last_purchase


# ---------------------------------------------------------------- orders
class _Orders:
    """Orders of the cutoff: one per (customer, order), at its latest line."""

    def __init__(self, c: Cut) -> None:
        self.c = c
        rows, order = c.enc.orders
        if isinstance(c.rows, slice):
            start, stop, _ = c.rows.indices(c.enc.n_events)
            a, b = np.searchsorted(rows, [start, stop])
            rows, order = rows[a:b], order[a:b]
        else:
            span = np.zeros(c.enc.n_events, dtype=bool)
            span[c.rows] = True
            keep = span[rows]
            rows, order = rows[keep], order[keep]
        self.line_rows = rows
        self.line_code = c.compact(c.enc.cust[rows])
        self.line_age = ages(c.t_us, c.enc.ts[rows])
        n_orders = int(order.max()) + 1 if len(order) else 0
        o_age = k.minimum(order, self.line_age, n_orders, fill=k.NEVER)
        present = o_age < k.NEVER
        o_code = np.full(n_orders, c.n, dtype=np.int64)
        o_code[order] = self.line_code
        ch = c.enc.channel[rows]
        o_ch = k.minimum(order, ch, n_orders, fill=N_CH)
        online = _ONLINE_CH[ch] & (c.enc.store[rows] >= 0)
        picked = k.counts(order, n_orders, online) > 0
        self.code = o_code[present]
        self.age = o_age[present]
        self.channel = o_ch[present]
        self.bopis = picked[present]
        self.day = self.age // 86_400

    def features(self, last_purchase: np.ndarray) -> dict[str, np.ndarray]:
        c, n, nb = self.c, self.c.n, len(self.c.windows)
        out = {}
        per = _grouped(c, c.band_of_day(self.day), self.code, nb)
        self.windowed = win = _windows(per, np.int32)[:, :n]
        for j, d in enumerate(c.windows):
            out[f"orders_{d}d"] = win[j]
        for a, b in window_pairs(c.windows):
            ia, ib = c.windows.index(a), c.windows.index(b)
            out[f"orders_trend_{a}d_{b}d"] = k.ratio(win[ia], win[ib], np.nan, scale=b / a)
        per_ch = _grouped(c, self.channel, self.code, N_CH + 1)[:, :n]
        total = per_ch[:N_CH].sum(axis=0)
        for ch in SALES_CHANNELS:
            out[f"share_purchases_{ch}"] = k.ratio(per_ch[CH[ch]], total, 0.0)
        online = per_ch[CH["web"]] + per_ch[CH["app"]]
        out["share_purchases_online"] = k.ratio(online, total, 0.0)
        bopis = k.counts(self.code[self.bopis], c.width)[:n]
        out["share_purchases_bopis"] = k.ratio(bopis, online, 0.0)
        out |= self._gaps(last_purchase)
        return out

    def _gaps(self, last_purchase: np.ndarray) -> dict[str, np.ndarray]:
        """Mean and spread of the days between consecutive purchase days."""
        c, span = self.c, self.c.lookback
        keys = k.distinct(self.code * span + self.day)
        who, day = keys // span, keys % span
        same = who[1:] == who[:-1]
        gap = (day[1:] - day[:-1])[same].astype(np.float64)
        g_who = who[1:][same]
        n_gaps = k.counts(g_who, c.width)[: c.n]
        total = k.counts(g_who, c.width, gap)[: c.n]
        squares = k.counts(g_who, c.width, gap * gap)[: c.n]
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = total / n_gaps
            std = np.sqrt(np.maximum(squares / n_gaps - mean * mean, 0.0))
        since = k.days(last_purchase, float(span))
        return {
            "purchase_gap_mean": mean,
            "purchase_gap_std": std,
            "purchase_overdue": k.ratio(since, np.nan_to_num(mean), np.nan),
        }


# ---------------------------------------------------------------- monetary
def _money(c: Cut, orders: _Orders) -> dict[str, np.ndarray]:
    """Spend, order value, returned and discount shares per window."""
    nb, n, enc = len(c.windows), c.n, c.enc
    band = c.band_of_day(orders.line_age // 86_400)

    def windowed(band, code, weights) -> np.ndarray:
        return _windows(_grouped(c, band, code, nb, weights), np.float64)[:, :n]

    spend = windowed(band, orders.line_code, np.nan_to_num(enc.amount[orders.line_rows]))
    if enc.discount is not None:
        discount = windowed(band, orders.line_code, np.nan_to_num(enc.discount[orders.line_rows]))
    else:
        discount = np.zeros_like(spend)
    ret = np.flatnonzero(c.event_type == ET["return"])
    refunds = -np.nan_to_num(c.pick(enc.amount)[ret])
    returned = windowed(c.band_of_day(c.day[ret]), c.code[ret], refunds)
    out = {}
    for j, d in enumerate(c.windows):
        out[f"spend_{d}d"] = spend[j]
        out[f"aov_{d}d"] = k.ratio(spend[j], orders.windowed[j], np.nan)
        out[f"return_share_{d}d"] = k.ratio(returned[j], spend[j], 0.0)
        out[f"discount_share_{d}d"] = k.ratio(discount[j], spend[j] + discount[j], 0.0)
    return out


# ---------------------------------------------------------------- online days, store visits
_ACTIVE = np.isin(np.arange(N_ET), [ET["purchase"], *(ET[e] for e in ENGAGEMENT_TYPES)])
_ONLINE_CH = np.isin(np.arange(N_CH), [CH[ch] for ch in ONLINE_CHANNELS])
_ONLINE_LUT = _lut(
    {(CH[ch], et): 1 for ch in ONLINE_CHANNELS for et in range(N_ET) if _ACTIVE[et]}, 0
).astype(bool)
_STORE_LUT = _lut({(CH["store"], et): 1 for et in range(N_ET) if _ACTIVE[et]}, 0).astype(bool)


def _online_days(c: Cut, pair: np.ndarray) -> dict[str, np.ndarray]:
    """Distinct days with web / app activity, per window (a session proxy)."""
    rows = np.flatnonzero(_ONLINE_LUT[pair])
    span, nb = c.lookback, len(c.windows)
    keys = k.distinct(c.code[rows] * span + c.day[rows])
    who, day = keys // span, keys % span
    win = _windows(_grouped(c, c.band_of_day(day), who, nb), np.int32)[:, : c.n]
    return {f"online_days_{d}d": win[j] for j, d in enumerate(c.windows)}


def _store_visits(c: Cut, pair: np.ndarray) -> dict[str, np.ndarray]:
    """Visits = distinct (customer, store, day) with a store purchase or engagement."""
    rows = np.flatnonzero(_STORE_LUT[pair])
    span, nb, n = c.lookback, len(c.windows), c.n
    n_st = len(c.enc.stores) + 1  # the last slot: store unknown
    store = c.pick(c.enc.store)[rows].astype(np.int64)
    store[store < 0] = n_st - 1
    ts = c.pick(c.enc.ts)[rows]
    weekend = ((ts // DAY_US + 3) % 7 >= 5).astype(np.int64)  # 1970-01-01 was a Thursday
    keys = k.distinct((((c.code[rows] * n_st + store) * span + c.day[rows]) << 1) | weekend)
    visit = keys >> 1
    first = np.ones(len(visit), dtype=bool)
    first[1:] = visit[1:] != visit[:-1]  # a day straddling two dates counts once
    keys, visit = keys[first], visit[first]
    day = visit % span
    who_store = visit // span
    who, store = who_store // n_st, who_store % n_st
    win = _windows(_grouped(c, c.band_of_day(day), who, nb), np.int32)[:, :n]
    visits = win[-1]
    new_store = np.ones(len(who_store), dtype=bool)
    new_store[1:] = who_store[1:] != who_store[:-1]
    known = new_store & (store < n_st - 1)
    home = np.append(c.enc.customers.home_store[c.members], -1).astype(np.int64)
    at_home = store == home[who]
    out = {f"store_visits_{d}d": win[j] for j, d in enumerate(c.windows)}
    out["distinct_stores"] = k.counts(who[known], c.width)[:n]
    out["home_store_share"] = k.ratio(k.counts(who[at_home], c.width)[:n], visits, 0.0)
    weekend_visits = k.counts(who[(keys & 1) == 1], c.width)[:n]
    out["weekend_visit_share"] = k.ratio(weekend_visits, visits, 0.0)
    return out


# ---------------------------------------------------------------- customer attributes
def _attributes(c: Cut) -> dict[str, np.ndarray]:
    attrs = c.enc.customers
    signup = attrs.signup_us[c.members]
    known = signup != UNKNOWN_TS
    tenure = np.where(known, (c.t_us - np.where(known, signup, c.t_us)) / DAY_US, np.nan)
    out = {"tenure_days": tenure, "loyalty_tier": attrs.tier[c.members]}
    for ch in OUTREACH_CHANNELS:
        out[f"consent_{ch}"] = attrs.consent[ch][c.members]
    return out
