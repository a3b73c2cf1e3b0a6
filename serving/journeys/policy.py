"""The contact policy: decide every proposal of one evaluation run, vectorised.

Each proposal gets the first reason that applies, in the order of :data:`NOT_SENT`
(docs/journeys.md, "The contact policy in detail"); those left are sent at
``max(due_ts, as_of)``, or delayed to the end of the customer's quiet hours. Days for
caps and quiet hours are the customer's local calendar days (their time zone, else the
shop's). No loop runs over rows: only over journeys, channels and time zones.
"""

from __future__ import annotations

from datetime import time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from serving.journeys.decisions import SCHEMA
from serving.journeys.holdout import holdout_share, journey_salt
from serving.journeys.spec import Caps, ContactPolicy

NOT_SENT = (
    "no_consent",
    "holdout_global",
    "uplift_too_low",
    "suppressed_purchase",
    "suppressed_contact",
    "lower_priority",
    "capped",
    "holdout_journey",
)
"""Reasons not to send, in the order they are checked (the first that applies counts).
A journey's holdout is drawn last, among the proposals that would otherwise be sent: the
held-out customers are then exactly comparable with the contacted ones (drawn earlier,
the holdout would also hold customers the policy would have suppressed or capped)."""
CONTACTED = ("sent", "delayed")
"""History rows with these statuses are contacts (they count for caps and suppression)."""
PROPOSAL_COLUMNS = (
    "customer_id",
    "journey",
    "trigger_ts",
    "due_ts",
    "priority",
    "channel",
    "channel_probability",
    "churn_probability",
    "products",
    "uplift",
    "min_uplift",
    "journey_holdout",
)
_DAY = 86_400 * 10**9
_CAP_LOOKBACK_H = 9 * 24
"""History older than this before as_of cannot count for a cap: every send is at or
after as_of, its 7 local days start at most 7 days and a time-zone offset before it."""
_HOUR = 3_600 * 10**9
_OPEN = 0
_CODE = {reason: i + 1 for i, reason in enumerate(NOT_SENT)}
_REASONS = np.array(["sent", *NOT_SENT, "quiet_hours"], dtype=object)
_QUIET = len(_REASONS) - 1
_STATUS = np.array(["sent", "delayed", "not_sent"], dtype=object)


def apply_policy(
    proposals: pd.DataFrame,
    policy: ContactPolicy,
    history: pd.DataFrame,
    purchases: pd.DataFrame,
    as_of: pd.Timestamp,
    run_id: str,
    customer_zones: pd.Series | None = None,
) -> pd.DataFrame:
    """Decide every proposal (docs/journeys.md step 4 for its columns) under ``policy``:
    the decision log's columns, one row per proposal in the proposals' order.

    ``history``: earlier decisions (the log's columns; rows with status sent/delayed count);
    ``purchases``: customer_id, ts; ``customer_zones``: customer_id -> IANA time zone
    (missing: ``policy.timezone``). ``decision_id`` is ``f"{run_id}-{row}"``."""
    missing = [c for c in PROPOSAL_COLUMNS if c not in proposals.columns]
    if missing:
        raise ValueError(f"proposals lack the columns {missing}")
    as_of = _utc(as_of)
    p = proposals.reset_index(drop=True)
    n = len(p)
    codes, customers = pd.factorize(p["customer_id"].astype(str))
    ids = np.array(pa.array(customers).to_pylist(), dtype=object)
    journey = p["journey"].astype(str)
    priority = p["priority"].to_numpy(np.int64)
    channel, channels = pd.factorize(p["channel"])  # -1: no channel
    reason = np.zeros(n, np.int8)

    _mark(reason, channel < 0, "no_consent")
    if policy.global_holdout > 0:
        need = np.unique(codes[reason == _OPEN])  # hash only customers still in play
        glob = np.zeros(len(ids), bool)
        glob[need] = holdout_share(ids[need], policy.holdout_salt) < policy.global_holdout
        _mark(reason, glob[codes], "holdout_global")
    low = p["min_uplift"].notna() & ~(p["uplift"] > p["min_uplift"])
    _mark(reason, low.to_numpy(bool), "uplift_too_low")

    since = as_of - pd.Timedelta(hours=max(policy.suppress_after_contact_hours, _CAP_LOOKBACK_H))
    contacts = _contacts(history, customers, channels, since)
    bought = _recent_buyers(purchases, customers, as_of, policy.suppress_after_purchase_hours)
    exempt = journey.isin(policy.purchase_exempt).to_numpy()
    _mark(reason, bought[codes] & ~exempt, "suppressed_purchase")
    outranked = _outranked(contacts, len(customers), codes, priority, as_of, policy)
    _mark(reason, outranked, "suppressed_contact")
    _mark(reason, _losers(reason, codes, priority, journey, p["due_ts"]), "lower_priority")

    zone_of = _zones(customers, customer_zones, policy.timezone)
    open_rows = np.flatnonzero(reason == _OPEN)
    send = np.maximum(_ns(p["due_ts"]), as_of.value)[open_rows]
    send, delayed, day = _quiet_hours(send, zone_of[0][codes[open_rows]], zone_of[1], policy)
    cap_channels = {ch: channels.get_loc(ch) for ch in policy.channel_caps if ch in channels}
    capped = _capped(
        contacts, zone_of, codes[open_rows], day, channel[open_rows], cap_channels, policy
    )
    reason[open_rows[capped]] = _CODE["capped"]
    _mark(reason, _journey_holdout(p, reason, ids[codes], journey, policy), "holdout_journey")
    going = reason[open_rows] == _OPEN
    reason[open_rows[delayed & going]] = _QUIET
    send_at = np.full(n, np.datetime64("NaT"), "datetime64[ns]")
    send_at[open_rows[going]] = send[going].astype("datetime64[ns]")
    return _decisions(p, run_id, as_of, reason, send_at)


def _mark(reason: np.ndarray, mask: np.ndarray, name: str) -> None:
    """Give ``name`` to the rows of ``mask`` that have no reason yet."""
    reason[(reason == _OPEN) & mask] = _CODE[name]


def _utc(ts: object) -> pd.Timestamp:
    ts = pd.Timestamp(ts)
    return ts.tz_localize("UTC") if ts.tz is None else ts.tz_convert("UTC")


def _positions(values: pd.Series, index: pd.Index) -> np.ndarray:
    """Where each value is in ``index`` (-1: not there); Arrow's hash lookup, which is
    several times faster than pandas' for strings."""
    found = pc.index_in(pa.array(values.astype(str)), value_set=pa.array(index.astype(str)))
    return found.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)


def _ns(values: pd.Series) -> np.ndarray:
    """UTC nanoseconds since the epoch (naive values are taken as UTC)."""
    return pd.DatetimeIndex(pd.to_datetime(values, utc=True)).as_unit("ns").asi8


def _journey_holdout(
    p: pd.DataFrame, reason: np.ndarray, ids: np.ndarray, journey: pd.Series, policy: ContactPolicy
) -> np.ndarray:
    """Undecided rows whose customer is in their journey's holdout (share below the
    row's ``journey_holdout``); ``ids``: each row's customer id."""
    share = p["journey_holdout"].fillna(0.0).to_numpy(np.float64)
    candidate = (reason == _OPEN) & (share > 0)
    held = np.zeros(len(p), bool)
    for name in journey[candidate].unique():
        rows = np.flatnonzero(candidate & (journey == name).to_numpy())
        held[rows] = holdout_share(ids[rows], journey_salt(policy, name)) < share[rows]
    return held


def _recent_buyers(
    purchases: pd.DataFrame, customers: pd.Index, as_of: pd.Timestamp, hours: float
) -> np.ndarray:
    """Per customer: a purchase in (as_of - hours, as_of]."""
    bought = np.zeros(len(customers), bool)
    if hours <= 0 or purchases is None or purchases.empty:
        return bought
    ts = _ns(purchases["ts"])
    recent = (ts > as_of.value - int(hours * _HOUR)) & (ts <= as_of.value)
    code = _positions(purchases["customer_id"][recent], customers)
    bought[code[code >= 0]] = True
    return bought


def _contacts(
    history: pd.DataFrame, customers: pd.Index, channels: pd.Index, since: pd.Timestamp
) -> pd.DataFrame:
    """Contacts (sent/delayed) of this run's customers sent at or after ``since``: code
    (the customer's), send_at (UTC ns), channel (code into ``channels``, -1: another),
    priority."""
    columns = {"code": np.int64, "send_at": np.int64, "channel": np.int64, "priority": np.int64}
    if history is None or history.empty:
        return pd.DataFrame({c: np.array([], t) for c, t in columns.items()})
    h = history[history["status"].isin(CONTACTED) & history["send_at"].notna()]
    send_at = _ns(h["send_at"])
    h = h[send_at >= since.value]
    code = _positions(h["customer_id"], customers)
    keep = code >= 0
    return pd.DataFrame(
        {
            "code": code[keep],
            "send_at": send_at[send_at >= since.value][keep],
            "channel": _positions(h["channel"].fillna(""), channels)[keep],
            "priority": h["priority"].to_numpy(np.int64)[keep],
        }
    )


def _outranked(
    contacts: pd.DataFrame,
    n_customers: int,
    codes: np.ndarray,
    priority: np.ndarray,
    as_of: pd.Timestamp,
    policy: ContactPolicy,
) -> np.ndarray:
    """Rows whose customer had a contact of higher priority sent after
    as_of - suppress_after_contact_hours (or scheduled later, still to be sent)."""
    hours = policy.suppress_after_contact_hours
    if hours <= 0 or contacts.empty:
        return np.zeros(len(codes), bool)
    recent = contacts[contacts["send_at"].to_numpy() > as_of.value - int(hours * _HOUR)]
    top = np.full(n_customers, np.iinfo(np.int64).min)
    np.maximum.at(top, recent["code"].to_numpy(np.int64), recent["priority"].to_numpy(np.int64))
    return top[codes] > priority


def _losers(
    reason: np.ndarray, codes: np.ndarray, priority: np.ndarray, journey: pd.Series, due: pd.Series
) -> np.ndarray:
    """Open rows of a customer who has another open row that goes first: higher priority,
    then journey name ascending, then earlier due_ts (then the earlier row)."""
    rows = np.flatnonzero(reason == _OPEN)
    names = pd.factorize(journey.to_numpy(object)[rows], sort=True)[0]
    order = rows[np.lexsort((_ns(due)[rows], names, -priority[rows], codes[rows]))]
    first = np.ones(len(order), bool)
    first[1:] = codes[order][1:] != codes[order][:-1]
    lose = np.zeros(len(codes), bool)
    lose[order[~first]] = True
    return lose


def _zones(
    customers: pd.Index, customer_zones: pd.Series | None, default: str
) -> tuple[np.ndarray, list[str]]:
    """Each customer's time zone as a code into the returned list of zone names."""
    if customer_zones is None or customer_zones.empty:
        return np.zeros(len(customers), np.int64), [default]
    zones = customer_zones[~customer_zones.index.duplicated(keep="last")]
    at = _positions(pd.Series(customers), zones.index)
    names = np.where(at >= 0, zones.to_numpy(object)[at], default)
    names = np.where(pd.isna(names), default, names)
    code, uniques = pd.factorize(names)
    for zone in uniques:
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError, TypeError):
            raise ValueError(f"customer_zones: unknown time zone {zone!r}") from None
    return code.astype(np.int64), [str(z) for z in uniques]


def _local(utc_ns: np.ndarray, zone: str) -> np.ndarray:
    """Wall-clock nanoseconds in ``zone`` of UTC instants."""
    index = pd.DatetimeIndex(utc_ns.astype("datetime64[ns]")).tz_localize("UTC")
    return index.tz_convert(zone).tz_localize(None).asi8


def _since_midnight(t: time) -> int:
    return ((t.hour * 60 + t.minute) * 60 + t.second) * 10**9 + t.microsecond * 1000


def _quiet_hours(
    send: np.ndarray, zone_code: np.ndarray, zones: list[str], policy: ContactPolicy
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Send times moved out of the local quiet hours [start, end) (to the next local
    ``end``), which of them moved, and each final send's local day number."""
    send = send.copy()
    delayed = np.zeros(len(send), bool)
    day = np.zeros(len(send), np.int64)
    quiet = policy.quiet_hours
    start, end = (_since_midnight(quiet.start), _since_midnight(quiet.end)) if quiet else (0, 0)
    for z, zone in enumerate(zones):
        rows = np.flatnonzero(zone_code == z)
        if not len(rows):
            continue
        local = _local(send[rows], zone)
        midnight = local - local % _DAY
        tod = local - midnight
        if start < end:
            moved, next_day = (tod >= start) & (tod < end), np.zeros(len(rows), bool)
        elif start > end:
            next_day = tod >= start
            moved = next_day | (tod < end)
        else:  # start == end: no quiet hours
            moved = next_day = np.zeros(len(rows), bool)
        if moved.any():
            wall = (midnight + next_day * _DAY + end)[moved].astype("datetime64[ns]")
            # DST: a wall time that does not exist is moved forward, an ambiguous one is
            # the first (earlier) of its two instants
            utc = pd.DatetimeIndex(wall).tz_localize(
                zone, ambiguous=np.ones(len(wall), bool), nonexistent="shift_forward"
            )
            send[rows[moved]] = utc.tz_convert("UTC").as_unit("ns").asi8
            local[moved] = _local(send[rows[moved]], zone)
        delayed[rows] = moved
        day[rows] = local // _DAY
    return send, delayed, day


def _capped(
    contacts: pd.DataFrame,
    zone_of: tuple[np.ndarray, list[str]],
    codes: np.ndarray,
    day: np.ndarray,
    channel: np.ndarray,
    cap_channels: dict[str, int],
    policy: ContactPolicy,
) -> np.ndarray:
    """Which of these sends (one per customer: ``codes``, local ``day``, ``channel`` code)
    would exceed a global or channel cap of its local day or of the 7 days ending with
    it, counting the earlier contacts and the send itself. ``cap_channels``: the code of
    each capped channel among this run's channels."""
    caps: list[tuple[Caps, int | None]] = [(policy.caps, None)]
    caps += [(c, cap_channels[ch]) for ch, c in policy.channel_caps.items() if ch in cap_channels]
    caps = [(c, ch) for c, ch in caps if c.per_day is not None or c.per_week is not None]
    capped = np.zeros(len(codes), bool)
    if not caps or not len(codes):
        return capped
    row_of = np.full(len(zone_of[0]), -1)
    row_of[codes] = np.arange(len(codes))
    row = row_of[contacts["code"].to_numpy(np.int64)]
    c = contacts[row >= 0]
    row = row[row >= 0]
    hday = np.zeros(len(c), np.int64)
    zone_code = zone_of[0][c["code"].to_numpy(np.int64)]
    for z, zone in enumerate(zone_of[1]):
        rows = np.flatnonzero(zone_code == z)
        if len(rows):
            hday[rows] = _local(c["send_at"].to_numpy(np.int64)[rows], zone) // _DAY
    back = day[row] - hday
    in_day, in_week = back == 0, (back >= 0) & (back < 7)
    same = c["channel"].to_numpy(np.int64) == channel[row]
    for cap, ch in caps:
        hit = same if ch is not None else np.ones(len(row), bool)
        applies = channel == ch if ch is not None else np.ones(len(codes), bool)
        if cap.per_day is not None:
            n_day = np.bincount(row[in_day & hit], minlength=len(codes))
            capped |= applies & (n_day + 1 > cap.per_day)
        if cap.per_week is not None:
            n_week = np.bincount(row[in_week & hit], minlength=len(codes))
            capped |= applies & (n_week + 1 > cap.per_week)
    return capped


def _decisions(
    p: pd.DataFrame, run_id: str, as_of: pd.Timestamp, reason: np.ndarray, send_at: np.ndarray
) -> pd.DataFrame:
    """The decision log's columns from the proposals and their reasons."""
    n = len(p)
    status = _STATUS[np.where(reason == _OPEN, 0, np.where(reason == _QUIET, 1, 2))]
    out = pd.DataFrame(
        {
            "decision_id": f"{run_id}-" + pd.Series(np.arange(n)).astype(str),
            "run_id": run_id,
            "decided_at": pd.Series(as_of, index=range(n)).dt.as_unit("ns"),
            "customer_id": p["customer_id"].astype(str),
            "journey": p["journey"].astype(str),
            "trigger_ts": pd.to_datetime(p["trigger_ts"], utc=True),
            "status": pd.Series(status, dtype=str),
            "reason": pd.Series(_REASONS[reason], dtype=str),
            "channel": p["channel"],
            "send_at": pd.Series(send_at).dt.tz_localize("UTC"),
            "products": p["products"],
            "churn_probability": p["churn_probability"].astype(np.float64),
            "channel_probability": p["channel_probability"].astype(np.float64),
            "uplift": p["uplift"].astype(np.float64),
            "priority": p["priority"].astype(np.int32),
        }
    )
    return out[SCHEMA.names]
