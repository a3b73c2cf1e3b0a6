"""Audience, channel and content of a journey's triggered customers (docs/journeys.md,
steps 2-3): who may enter, where to reach them (the next-best-channel model among the
journey's consented channels) and with which products (the recommender, or the trigger's
own products)."""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from features.contract.consent import consent_mask
from features.contract.schema import CONSENT_COLUMNS, LOYALTY_TIERS
from serving.journeys.spec import Journey

if TYPE_CHECKING:
    from serving.scoring import Scorer

OPS: dict[str, Callable[[np.ndarray, float], np.ndarray]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}


def in_audience(journey: Journey, features: pd.DataFrame) -> np.ndarray:
    """Bool per row of ``features``: every audience condition holds (a NaN feature fails
    it, whatever the operator) and the loyalty tier is listed. Consent is not checked
    here: :func:`choose_channels` leaves the channel None, so the decision log says
    ``no_consent`` instead of dropping the customer silently."""
    audience = journey.audience
    mask = np.ones(len(features), dtype=bool)
    for condition in audience.where:
        values = features[condition.feature].to_numpy(dtype=np.float64, na_value=np.nan)
        mask &= ~np.isnan(values) & OPS[condition.op](values, condition.value)
    if audience.loyalty_tiers is not None:
        codes = [LOYALTY_TIERS.index(t) for t in audience.loyalty_tiers]
        mask &= features["loyalty_tier"].isin(codes).to_numpy(dtype=bool)
    return mask


def _consent(scorer: Scorer, ids: Sequence[str], pos: np.ndarray, allowed: Sequence[str]):
    """(ids x allowed) consent: the Scorer's own mask (kept current by live events) for
    channels the channel model knows, the snapshot's consent columns for the others."""
    out = np.zeros((len(ids), len(allowed)), dtype=bool)
    known = pos >= 0
    others = []
    for j, channel in enumerate(allowed):
        if channel in scorer.channels:
            col = scorer.channels.index(channel)
            out[known, j] = scorer.consent[pos[known], col]
        else:
            others.append(j)
    if others:
        table = scorer.snapshot.features
        columns = [c for c in CONSENT_COLUMNS.values() if c in table.columns]
        frame = table[columns].reset_index(names="customer_id")
        mask = consent_mask(pd.Index(list(ids), dtype="str"), [allowed[j] for j in others], frame)
        out[:, others] = mask
    return out


def choose_channels(
    journey: Journey, scorer: Scorer, ids: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """(channel per id: str or None where no allowed channel is consented, its consented
    next-best-channel probability: NaN where the model does not rank it).

    ``next_best``: the consented allowed channel the model ranks first; consented allowed
    channels the model does not know rank after the known ones, in ``allowed`` order.
    ``fixed``: ``allowed[0]`` when consented."""
    allowed = list(journey.channel.allowed)
    if journey.channel.choose == "fixed":
        allowed = allowed[:1]
    pos = scorer.positions(ids)
    consent = _consent(scorer, ids, pos, allowed)
    proba = np.full((len(ids), len(allowed)), np.nan)
    if scorer.channels and len(ids):
        model = scorer.next_channel(pos)
        for j, channel in enumerate(allowed):
            if channel in scorer.channels:
                proba[:, j] = model[:, scorer.channels.index(channel)]
    # rank: known consented channels (2 + p) > unknown consented ones (in allowed order,
    # between 0 and 1) > unconsented (-1); argmax keeps the first of equals (allowed order)
    n = len(allowed)
    fallback = (n - np.arange(n)) / (n + 1)
    rank = np.where(np.isnan(proba), fallback, 2.0 + np.nan_to_num(proba))
    rank = np.where(consent, rank, -1.0)
    best = rank.argmax(axis=1) if len(ids) else np.zeros(0, np.int64)
    rows = np.arange(len(ids))
    chosen = rank[rows, best] >= 0
    channels = np.array([*allowed, None], dtype=object)[np.where(chosen, best, n)]
    probability = np.where(chosen, proba[rows, best], np.nan).astype(np.float64)
    return channels, probability


def choose_products(
    journey: Journey,
    scorer: Scorer,
    ids: Sequence[str],
    channels: np.ndarray,
    trigger_products: Sequence[Sequence[str]],
) -> list[list[str]]:
    """Products per id: ``trigger``: the trigger's products, the first ``k``;
    ``recommender``: ``scorer.recommend(..., k, channel=<the chosen channel>)``, one call
    per channel (no channel: the recommender without a channel context)."""
    k = journey.content.k
    if journey.content.source == "trigger":
        return [list(products)[:k] for products in trigger_products]
    out: list[list[str]] = [[] for _ in range(len(ids))]
    if not len(ids):
        return out
    keys = pd.Series(channels, dtype=object).fillna("")
    for channel, at in keys.groupby(keys, sort=True).indices.items():
        group = [ids[i] for i in at]
        recs = scorer.recommend(group, k, channel=channel or None)
        frame = scorer.recommendation_frame(group, recs)
        frame["at"] = at[recs.pos]
        lists = frame.sort_values(["at", "rank"]).groupby("at")["product_id"].agg(list)
        for i, products in lists.items():
            out[i] = products
    return out
