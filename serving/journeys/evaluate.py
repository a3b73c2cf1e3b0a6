"""One evaluation of every enabled journey as of a moment (``omni journeys run --as-of``):
triggers over the store, audience, channel and products by the snapshot's models, the
contact policy over the decision log, then the run's decisions and outbox written.

Nothing is written when a check fails: a journey over its share without ``confirm``, a
journey that asks for uplift without a model. A re-run of the same moment decides
nothing twice (a customer's trigger already in the log is skipped)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from features.settings import Settings
from serving.journeys.spec import ContactPolicy, Journey, JourneyError

LAST_SCORES = "last_scores.parquet"
"""Churn probabilities of the previous run (a churn trigger fires on crossing into its
band since then), in the journeys folder."""


class ShareExceeded(JourneyError):
    """A journey would contact more than the policy's share of all customers in one run."""


@dataclass
class RunResult:
    """What one evaluation decided and wrote."""

    run_id: str
    as_of: pd.Timestamp
    customers: int
    decisions: pd.DataFrame
    written: dict[str, Path] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def summary(self) -> pd.DataFrame:
        """Decisions per journey and reason (the CLI's table)."""
        d = self.decisions
        if d.empty:
            return pd.DataFrame(columns=["journey", "status", "reason", "customers"])
        return (
            d.groupby(["journey", "status", "reason"], observed=True)
            .size()
            .rename("customers")
            .reset_index()
        )


def new_run_id(as_of: pd.Timestamp) -> str:
    """``<as_of>-<random>``: sortable by moment, unique across re-runs."""
    return f"{as_of:%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"


def _already_decided(history: pd.DataFrame, triggered: pd.DataFrame) -> np.ndarray:
    """bool per triggered row: its (customer, journey, trigger_ts) is in the log."""
    if history.empty or triggered.empty:
        return np.zeros(len(triggered), bool)
    keys = ["customer_id", "journey", "trigger_ts"]
    seen = history[keys].drop_duplicates().assign(_seen=True)
    merged = triggered[keys].merge(seen, on=keys, how="left")
    return merged["_seen"].fillna(False).to_numpy(bool)


def proposals_for(
    journey: Journey,
    triggered: pd.DataFrame,
    scorer,
    as_of: pd.Timestamp,
    uplift_model=None,
    features: pd.DataFrame | None = None,
    churn: pd.Series | None = None,
) -> pd.DataFrame:
    """The triggered customers the journey's audience takes, with channel, products,
    scores and (with ``uplift_model``) predicted uplift: the policy's input
    (docs/journeys.md, step 4). ``features``: the customers' rows (default: the
    snapshot's; the live path passes the fresh ones); ``churn``: their churn
    probabilities by customer_id, as the evaluation computed them (default: the
    scorer's)."""
    from serving.journeys.choose import choose_channels, choose_products, in_audience

    features = scorer.snapshot.features if features is None else features
    known = triggered["customer_id"].isin(features.index).to_numpy()
    triggered = triggered[known].reset_index(drop=True)
    rows = features.loc[triggered["customer_id"]]
    triggered = triggered[in_audience(journey, rows)].reset_index(drop=True)
    ids = triggered["customer_id"].tolist()
    channels, probability = choose_channels(journey, scorer, ids)
    products = choose_products(journey, scorer, ids, channels, triggered["trigger_products"])
    delay = pd.Timedelta(hours=journey.delay_hours)
    due = (triggered["trigger_ts"] + delay).clip(lower=as_of)
    if churn is None:
        churn = scorer.churn(scorer.positions(ids)) if ids else np.zeros(0)
    else:
        churn = churn.reindex(ids).to_numpy(np.float64)
    uplift = np.full(len(ids), np.nan)
    if uplift_model is not None and ids:
        from training.uplift.job import with_channel

        rows = with_channel(features.loc[ids], channels)
        uplift = uplift_model.predict_uplift(rows)
    return triggered.assign(
        due_ts=due,
        priority=np.int32(journey.priority),
        channel=pd.Series(channels, dtype="object"),
        channel_probability=np.asarray(probability, np.float64),
        churn_probability=np.asarray(churn, np.float64),
        products=pd.Series(products, dtype="object"),
        uplift=uplift,
        min_uplift=np.nan if journey.min_uplift is None else journey.min_uplift,
        journey_holdout=journey.holdout,
    )


def uplift_models_for(journeys_dir: Path, journeys: Sequence[Journey]) -> dict:
    """Each journey's trained uplift model (None: none); :class:`JourneyError` for a
    journey that sets ``min_uplift`` without one."""
    from training.uplift.job import load_uplift

    models = {j.name: load_uplift(journeys_dir, j.name) for j in journeys}
    untrained = [j.name for j in journeys if j.min_uplift is not None and not models[j.name]]
    if untrained:
        raise JourneyError(
            f"journeys {untrained} set min_uplift, but no uplift model is trained for them: "
            "`omni journeys train-uplift JOURNEY` (it needs their decisions and holdout), "
            "or remove min_uplift"
        )
    return models


@dataclass
class Inputs:
    """What one evaluation reads: the triggers' events (:func:`triggers.events_for`'s
    columns), feature rows and churn scores (index customer_id) with the previous ones,
    the decision log (``logged``: every run, for triggers decided already; ``history``:
    up to the moment, for the policy) and recent purchases (customer_id, ts)."""

    events: object
    features: pd.DataFrame
    churn: pd.Series
    previous_churn: pd.Series | None
    logged: pd.DataFrame
    history: pd.DataFrame
    purchases: pd.DataFrame
    zones: pd.Series | None = None  # customer_id -> IANA time zone, where the table has one


def decide(
    journeys: Sequence[Journey],
    policy: ContactPolicy,
    scorer,
    inputs: Inputs,
    as_of: pd.Timestamp,
    run_id: str,
    uplift_models: dict | None = None,
    say: Callable[[str], None] = print,
) -> pd.DataFrame:
    """The decisions of one evaluation: triggers, audience, channel and products, then the
    policy. The batch run (every customer, the snapshot) and the live one (the customers
    events touched, their fresh rows) both call it."""
    from serving.journeys.policy import apply_policy
    from serving.journeys.triggers import find_triggers

    uplift_models = uplift_models or {}
    parts = []
    for journey in journeys:
        triggered = find_triggers(
            journey, inputs.events, inputs.features, as_of, inputs.churn, inputs.previous_churn
        )
        triggered = triggered[~_already_decided(inputs.logged, triggered)].reset_index(drop=True)
        proposed = 0
        if len(triggered):
            model = uplift_models.get(journey.name)
            part = proposals_for(
                journey, triggered, scorer, as_of, model, inputs.features, inputs.churn
            )
            parts.append(part)
            proposed = len(part)
        say(f"{journey.name}: {len(triggered):,} customers triggered, {proposed:,} in its audience")
    if not parts:
        return _no_decisions()
    proposals = pd.concat(parts, ignore_index=True)
    sent = inputs.history[inputs.history["status"].isin(["sent", "delayed"])]
    return apply_policy(proposals, policy, sent, inputs.purchases, as_of, run_id, inputs.zones)


def evaluate(
    settings: Settings,
    journeys: Sequence[Journey],
    policy: ContactPolicy,
    as_of: pd.Timestamp,
    confirm: Callable[[str], bool] | None = None,
    write: bool = True,
    say: Callable[[str], None] = print,
) -> RunResult:
    """Decide every enabled journey as of ``as_of`` and (``write``) log the decisions and
    fill the outbox. When a journey would contact more than ``policy.max_share_per_run`` of
    all customers, ``confirm`` (the CLI's question, or ``--yes``) is asked; no ``confirm``
    or a no: :class:`ShareExceeded`, and nothing is written."""
    from serving.batch import snapshot_for
    from serving.journeys.decisions import read_decisions, write_decisions
    from serving.journeys.outbox import repair_outbox, write_outbox
    from serving.journeys.triggers import events_for
    from serving.online import load_snapshot
    from serving.scoring import Scorer

    journeys = [j for j in journeys if j.enabled]
    uplift_models = uplift_models_for(settings.journeys_dir, journeys)
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    snapshot = load_snapshot(snapshot_for(settings, as_of, say))
    scorer = Scorer(snapshot, num_threads=0, precompute_candidates=False)
    everyone = np.arange(len(scorer.ids))
    churn = pd.Series(scorer.churn(everyone), index=scorer.ids)
    previous = _previous_scores(settings.journeys_dir, as_of)
    seconds["snapshot"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    events = events_for(journeys, settings.store_dir, as_of)
    purchases = recent_purchases(settings.store_dir, as_of, policy)
    for run in repair_outbox(settings.journeys_dir):
        say(f"outbox of run {run} written (the run was logged, then interrupted)")
    logged = read_decisions(settings.journeys_dir)  # every run's: a trigger is decided once
    history = logged[logged["decided_at"] <= as_of]  # what the policy counts: never the future
    seconds["read"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    run_id = new_run_id(as_of)
    decisions = decide(
        journeys,
        policy,
        scorer,
        Inputs(
            events,
            snapshot.features,
            churn,
            previous,
            logged,
            history,
            purchases,
            customer_zones(settings.store_dir),
        ),
        as_of,
        run_id,
        uplift_models,
        say,
    )
    seconds["decide"] = time.perf_counter() - t0
    _check_share(decisions, len(scorer.ids), policy, confirm)
    result = RunResult(run_id, as_of, len(scorer.ids), decisions, seconds=seconds)
    if write:
        t0 = time.perf_counter()
        if len(decisions):
            result.written["decisions"] = write_decisions(settings.journeys_dir, decisions, run_id)
            result.written |= write_outbox(settings.journeys_dir, decisions, run_id)
        _write_scores(settings.journeys_dir, churn, as_of)
        seconds["write"] = time.perf_counter() - t0
    return result


def contacts_over_share(
    decisions: pd.DataFrame,
    customers: int,
    policy: ContactPolicy,
    earlier: pd.DataFrame | None = None,
) -> pd.Series:
    """Contacts per journey (``decisions``' plus those of ``earlier`` decisions) for the
    journeys past ``policy.max_share_per_run`` of ``customers``: the batch run asks before
    writing them, the live one refuses them."""
    contacts = decisions[decisions["status"] != "not_sent"].groupby("journey").size()
    if earlier is not None and len(contacts):
        before = earlier[earlier["status"] != "not_sent"].groupby("journey").size()
        contacts = contacts.add(before.reindex(contacts.index, fill_value=0))
    return contacts[contacts > policy.max_share_per_run * customers]


def _check_share(
    decisions: pd.DataFrame,
    customers: int,
    policy: ContactPolicy,
    confirm: Callable[[str], bool] | None,
) -> None:
    if decisions.empty or customers == 0:
        return
    over = contacts_over_share(decisions, customers, policy)
    if not len(over):
        return
    listed = ", ".join(f"{j} ({n:,} = {n / customers:.0%})" for j, n in over.items())
    question = (
        f"journeys would contact more than {policy.max_share_per_run:.0%} of the "
        f"{customers:,} customers in one run: {listed}"
    )
    if confirm is None or not confirm(question):
        raise ShareExceeded(
            f"{question}; nothing was written (confirm with --yes, or raise "
            "max_share_per_run in policy.yaml)"
        )


def customer_zones(store_dir: Path) -> pd.Series | None:
    """customer_id -> time zone from the customers table (None when no customer has one:
    the policy's shop zone for everyone)."""
    from features.store.events import read_table

    customers = read_table(store_dir, "customers")
    if "time_zone" not in customers.columns:
        return None
    zones = customers.set_index("customer_id")["time_zone"].dropna()
    return zones.astype(str) if len(zones) else None


def recent_purchases(store_dir: Path, as_of: pd.Timestamp, policy: ContactPolicy) -> pd.DataFrame:
    """customer_id, ts of the purchases the policy's suppression looks back on (read on
    their own: the journeys' triggers may read no purchases at all)."""
    from features.store.events import read_events

    start = as_of - pd.Timedelta(hours=policy.suppress_after_purchase_hours)
    columns = ["customer_id", "ts"]
    return read_events(store_dir, start, as_of, columns=columns, event_types=["purchase"])


def _no_decisions() -> pd.DataFrame:
    from serving.journeys.decisions import SCHEMA

    return SCHEMA.empty_table().to_pandas()


def _previous_scores(journeys_dir: Path, as_of: pd.Timestamp) -> pd.Series | None:
    """The last run's churn probabilities, if that run was before ``as_of`` (a re-run of
    an earlier moment compares with nothing rather than with its future)."""
    path = journeys_dir / LAST_SCORES
    if not path.exists():
        return None
    frame = pd.read_parquet(path)
    if frame.empty or frame["as_of"].iloc[0] >= as_of:
        return None
    return frame.set_index("customer_id")["churn_probability"]


def _write_scores(journeys_dir: Path, churn: pd.Series, as_of: pd.Timestamp) -> None:
    from features.atomic import write_parquet_atomic

    frame = pd.DataFrame(
        {"customer_id": churn.index.astype(str), "churn_probability": churn.to_numpy()}
    ).assign(as_of=as_of)
    write_parquet_atomic(frame, journeys_dir / LAST_SCORES)
