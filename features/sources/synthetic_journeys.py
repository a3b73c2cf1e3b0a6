"""A planted journey response for the synthetic source (issue 18): a weekly win-back journey
with a journey holdout, and purchases that contact causes, by a known amount per segment.

``add_journey_response(data, seed)`` runs after :func:`features.sources.synthetic.generate`
with its own generator (so the default output never changes) and adds:

- ``truth["journey_decisions"]``: the decision log of the history (serving/journeys/decisions.py
  columns). Every 7 days from day 7 until ``ATTRIBUTION_DAYS`` before the end, 20 % of the
  customers signed up, not lapsed and with some outreach consent are decided; 30 % of them go
  to the journey's holdout (``not_sent`` / ``holdout_journey``), chosen by this generator.
  The channel is the customer's ``best_channel`` when that is an outreach channel, else a
  random consented outreach channel.
- for contacted customers a ``message_sent`` (campaign ``JR-winback``, with customer_id)
  one minute after the decision, and with probability ``PLANTED_LIFT[tier, on_best]`` a
  one-line web purchase 1 h - 6 days after it (``email_hash`` where the customer has one in
  the events, else ``customer_id``; the person in ``truth["event_person"]``).
- ``truth["journey_response"]``: per tier x on_best_channel the planted lift, the organic
  conversion within the window (over all decided customers, before planting) and the
  expected uplift in conversion, lift x (1 - organic): a planted purchase of a customer who
  bought anyway adds no conversion.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.contract import schema
from features.sources.base import SourceData

JOURNEY = "winback"
CAMPAIGN = f"JR-{JOURNEY}"
ATTRIBUTION_DAYS = 7
DECIDE_SHARE = 0.2
HOLDOUT_SHARE = 0.3
TIERS = ("none", "bronze", "silver", "gold")
PLANTED_LIFT = np.array(
    [  # (other channel, best channel) per tier: gold buys anyway
        [0.04, 0.15],
        [0.04, 0.15],
        [0.03, 0.10],
        [0.0, 0.0],
    ]
)
OUTREACH = ("email", "sms", "push", "direct_mail")


def _decisions(rng: np.random.Generator, data: SourceData) -> pd.DataFrame:
    """Who is decided when, on which channel, held out or not."""
    truth = data.truth["customers"].set_index("customer_id")
    cust = data.customers.set_index("customer_id").join(truth[["tier", "best_channel", "lapse_ts"]])
    consent = cust[[schema.CONSENT_COLUMNS[c] for c in OUTREACH]].to_numpy(dtype=bool)
    ts = data.events["ts"]
    start, end = ts.min().floor("D"), ts.max().ceil("D")
    times = pd.date_range(
        start + pd.Timedelta(days=7), end - pd.Timedelta(days=ATTRIBUTION_DAYS), freq="7D"
    )
    times = times + pd.Timedelta(hours=10)
    n, w = len(cust), len(times)
    when = np.repeat(times.to_numpy(), n).reshape(w, n)
    signup = cust["signup_ts"].to_numpy()
    lapse = cust["lapse_ts"].to_numpy()
    eligible = (
        (signup[None, :] <= when)
        & ~(lapse[None, :] <= when)
        & consent.any(axis=1)[None, :]
        & (rng.random((w, n)) < DECIDE_SHARE)
    )
    week, who = np.nonzero(eligible)
    best = cust["best_channel"].astype(str).to_numpy()[who]
    on_best = np.isin(best, OUTREACH)
    # a random consented outreach channel: the first consented in a random order
    keys = rng.random((len(who), len(OUTREACH))) + ~consent[who] * 2.0
    other = np.array(OUTREACH)[keys.argmin(axis=1)]
    channel = np.where(on_best, best, other)
    held = rng.random(len(who)) < HOLDOUT_SHARE
    decided = (
        pd.to_datetime(times[week]).tz_convert("UTC")
        if times.tz
        else times[week].tz_localize("UTC")
    )
    run = np.char.add("synthetic-", decided.strftime("%Y%m%d").to_numpy().astype(str))
    return pd.DataFrame(
        {
            "decision_id": np.char.add(np.char.add(run, "-"), np.arange(len(who)).astype(str)),
            "run_id": run,
            "decided_at": decided,
            "customer_id": cust.index.to_numpy()[who],
            "journey": JOURNEY,
            "trigger_ts": decided,
            "status": np.where(held, "not_sent", "sent"),
            "reason": np.where(held, "holdout_journey", "sent"),
            "channel": channel,
            "send_at": decided.where(~held),
            "products": [[] for _ in range(len(who))],
            "churn_probability": np.nan,
            "channel_probability": np.nan,
            "uplift": np.nan,
            "priority": np.int32(0),
            "tier": cust["tier"].astype(str).to_numpy()[who],
            "on_best_channel": on_best,
        }
    )


def _organic_conversion(decisions: pd.DataFrame, data: SourceData) -> np.ndarray:
    """Whether each decided customer bought within the window without any help."""
    from features.labels import purchased_within

    person = data.truth["event_person"]["person_id"]
    buys = data.events.loc[data.events["event_type"].eq("purchase"), ["ts"]]
    buys = buys.assign(customer_id=person[buys.index].to_numpy())
    moments = decisions[["customer_id", "decided_at"]].rename(columns={"decided_at": "at"})
    return purchased_within(moments, buys, pd.Timedelta(days=ATTRIBUTION_DAYS))


def add_journey_response(data: SourceData, seed: int) -> SourceData:
    """``data`` with the planted win-back history (see the module docstring)."""
    rng = np.random.default_rng([seed, 18])
    dec = _decisions(rng, data)
    organic = _organic_conversion(dec, data)
    tier = pd.Categorical(dec["tier"], categories=TIERS).codes
    lift = PLANTED_LIFT[tier, dec["on_best_channel"].to_numpy().astype(int)]
    sent = dec["status"].eq("sent").to_numpy()
    planted = sent & (rng.random(len(dec)) < lift)

    events = data.events
    email_of = (
        pd.Series(
            events["email_hash"].to_numpy(),
            index=data.truth["event_person"]["person_id"].to_numpy(),
        )
        .dropna()
        .groupby(level=0)
        .first()
    )
    msgs = dec[sent]
    buys = dec[planted]
    products = data.products["product_id"].to_numpy()
    prices = data.products["price"].to_numpy()
    pick = rng.integers(0, len(products), len(buys))
    delay = pd.to_timedelta(rng.uniform(3600, (ATTRIBUTION_DAYS - 1) * 86400, len(buys)), unit="s")
    buy_email = email_of.reindex(buys["customer_id"]).to_numpy()
    new = pd.DataFrame(
        {
            "customer_id": np.concatenate(
                [
                    msgs["customer_id"].to_numpy(),
                    np.where(pd.isna(buy_email), buys["customer_id"], None),
                ]
            ),
            "email_hash": np.concatenate([np.full(len(msgs), None), buy_email]),
            "ts": np.concatenate(
                [
                    (msgs["decided_at"] + pd.Timedelta(minutes=1)).to_numpy(),
                    (buys["decided_at"] + delay).to_numpy(),
                ]
            ),
            "channel": np.concatenate([msgs["channel"].to_numpy(), np.full(len(buys), "web")]),
            "event_type": np.concatenate(
                [np.full(len(msgs), "message_sent"), np.full(len(buys), "purchase")]
            ),
            "order_id": np.concatenate(
                [
                    np.full(len(msgs), None),
                    np.char.add("OJ", np.arange(len(buys)).astype(str)).astype(object),
                ]
            ),
            "product_id": np.concatenate([np.full(len(msgs), None), products[pick]]),
            "amount": np.concatenate([np.full(len(msgs), np.nan), prices[pick]]),
            "quantity": np.concatenate(
                [np.full(len(msgs), None), np.ones(len(buys), dtype=object)]
            ),
            "campaign_id": np.concatenate([np.full(len(msgs), CAMPAIGN), np.full(len(buys), None)]),
        }
    )
    new["ts"] = pd.to_datetime(new["ts"], utc=True).astype(events["ts"].dtype)
    for column in events.columns:
        if column not in new:
            new[column] = pd.Series([None] * len(new), dtype=events[column].dtype)
        elif isinstance(events[column].dtype, pd.CategoricalDtype):
            new[column] = pd.Categorical(new[column], dtype=events[column].dtype)
        else:
            new[column] = new[column].astype(events[column].dtype)
    person = np.concatenate([msgs["customer_id"].to_numpy(), buys["customer_id"].to_numpy()])
    all_events = pd.concat([events, new[events.columns]], ignore_index=True)
    all_person = np.concatenate([data.truth["event_person"]["person_id"].to_numpy(), person])
    order = np.argsort(all_events["ts"].to_numpy(), kind="stable")

    segment = dec.assign(organic=organic)
    response = (
        segment.groupby(["tier", "on_best_channel"], observed=True)
        .agg(decisions=("organic", "size"), organic_conversion=("organic", "mean"))
        .reset_index()
    )
    response["planted_lift"] = PLANTED_LIFT[
        pd.Categorical(response["tier"], categories=TIERS).codes,
        response["on_best_channel"].astype(int),
    ]
    response["expected_uplift"] = response["planted_lift"] * (1 - response["organic_conversion"])
    response["expected_conversion_contacted"] = (
        response["organic_conversion"] + response["expected_uplift"]
    )
    response.insert(0, "journey", JOURNEY)

    truth = dict(data.truth)
    truth["event_person"] = pd.DataFrame({"person_id": all_person[order]}).astype(
        data.truth["event_person"]["person_id"].dtype
    )
    truth["journey_decisions"] = dec.drop(columns=["tier", "on_best_channel"])
    truth["journey_response"] = response
    return SourceData(
        events=all_events.iloc[order].reset_index(drop=True),
        customers=data.customers,
        products=data.products,
        stores=data.stores,
        truth=truth,
        name=data.name,
    )
