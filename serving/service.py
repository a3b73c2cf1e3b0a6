"""The BentoML service that web, app, point-of-sale, email and SMS systems call.

One class, models loaded once in ``__init__`` from the online snapshot (see
:mod:`serving.online`), typed endpoints whose request fields and limits come from
:mod:`serving.schemas`. Scoring is :class:`serving.scoring.Scorer`, the code batch
scoring runs too. Start it with ``omni serve`` (which checks the snapshot first: a
failing ``__init__`` would make BentoML restart the worker forever).

Scoring endpoints need ``Authorization: Bearer <token>`` when ``OMNI_API_TOKEN`` is set;
BentoML's ``/livez``, ``/readyz``, ``/healthz`` and ``/metrics`` stay open.
"""

from __future__ import annotations

import gc
import hmac
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import bentoml
import numpy as np
from pydantic_core import ValidationError

from serving.rules import RequestError, channel_ranking, risk_band
from serving.schemas import (
    Categories,
    Channel,
    ChannelResponse,
    ChurnResponse,
    CustomerId,
    CustomerIds,
    Exclude,
    K,
    PingResponse,
    RecommendResponse,
    ScoreResponse,
)
from training.recs.candidates import REASONS

SNAPSHOT_ENV = "OMNI_SNAPSHOT"
BUNDLED_SNAPSHOT = Path(__file__).resolve().parent.parent / "bento_snapshot"
"""Where a built bento carries its snapshot (``omni bento`` copies it there)."""
PROTECTED = frozenset({"/recommend", "/next_best_channel", "/churn_risk", "/score", "/ping"})
log = logging.getLogger("omni.service")


def snapshot_path() -> Path:
    """``OMNI_SNAPSHOT``, else the bento's bundled snapshot, else the home's latest."""
    from features.settings import get_settings
    from serving.online import latest_snapshot

    if os.environ.get(SNAPSHOT_ENV):
        return Path(os.environ[SNAPSHOT_ENV])
    if (BUNDLED_SNAPSHOT / "manifest.json").exists():
        return BUNDLED_SNAPSHOT
    return latest_snapshot(get_settings())


class BearerAuth:
    """ASGI middleware: 401 on scoring paths unless the bearer token matches (compared in
    constant time). No token configured: everything passes."""

    def __init__(self, app: Any, token: str | None = None) -> None:
        from features.settings import get_settings

        self.app = app
        token = token if token is not None else get_settings().api_token
        self.expected = f"Bearer {token}".encode() if token else None

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if self.expected and scope["type"] == "http" and scope["path"] in PROTECTED:
            given = dict(scope["headers"]).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                body = json.dumps({"error": "missing or wrong bearer token"}).encode()
                await send(
                    {
                        "type": "http.response.start",
                        "status": 401,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"www-authenticate", b"Bearer"),
                            (b"content-length", str(len(body)).encode()),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def _bad(field: str, message: str, value: Any = None) -> ValidationError:
    """A request error in pydantic's shape, so BentoML answers 400 like any field error."""
    return ValidationError.from_exception_data(
        "request",
        [{"type": "value_error", "loc": (field,), "input": value, "ctx": {"error": message}}],
    )


@bentoml.service(
    name="omni_personalization",
    workers=1,
    traffic={"timeout": 10},
    logging={"access": {"request_content_length": False, "response_content_length": False}},
)
class Personalization:
    """Recommendations, next best channel and churn risk from the online snapshot."""

    def __init__(self) -> None:
        from threadpoolctl import threadpool_limits

        from serving.online import LIST_DEPTH, load_snapshot
        from serving.scoring import Scorer

        threadpool_limits(1)  # one request at a time per worker: BLAS threads only contend
        t0 = time.perf_counter()
        path = snapshot_path()
        self.scorer = Scorer(load_snapshot(path), num_threads=1, ranked_lists=LIST_DEPTH)
        self.meta = {
            "as_of": self.scorer.as_of.isoformat(),
            "model_versions": self.scorer.versions,
        }
        log.info(
            "loaded snapshot %s (as of %s; %s customers) in %.1f s",
            path.name,
            self.meta["as_of"],
            len(self.scorer.ids),
            time.perf_counter() - t0,
        )
        gc.collect()
        gc.freeze()  # the snapshot's objects never need collecting: no gen-2 pauses

    # ------------------------------------------------------------------ endpoints

    @bentoml.api
    async def recommend(
        self,
        customer_id: CustomerId,
        channel: Channel | None = None,
        k: K = 10,
        store_id: str | None = None,
        exclude: Exclude | None = None,
        categories: Categories | None = None,
    ) -> RecommendResponse:
        """Ranked products for one customer in one channel (and store), with a reason per
        item, the customer's churn risk and next-best-channel ranking."""
        s = self.scorer
        try:
            recs = s.recommend([customer_id], k, channel, store_id, exclude, categories)
        except RequestError as exc:
            raise _bad(exc.field, exc.message) from None
        pos = s.positions([customer_id])
        churn = s.churn(pos)
        proba = s.next_channel(pos)
        return RecommendResponse(
            customer_id=customer_id,
            channel=channel,
            store_id=store_id,
            cold_start=bool(recs.cold_start[0]),
            items=self._items(recs, np.arange(len(recs.pos))),
            churn=_churn(churn[0]),
            next_best_channel=self._channels(proba[0]),
            **self.meta,
        )

    @bentoml.api
    async def next_best_channel(
        self, customer_id: CustomerId | None = None, customer_ids: CustomerIds | None = None
    ) -> ChannelResponse:
        """Consented channels with probabilities, best first, for one customer or a list."""
        ids = _ids(customer_id, customer_ids)
        pos = self.scorer.positions(ids)
        proba = self.scorer.next_channel(pos)
        results = [
            {"customer_id": c, "known": bool(p >= 0), "channels": self._channels(proba[i])}
            for i, (c, p) in enumerate(zip(ids, pos, strict=True))
        ]
        return ChannelResponse(results=results, **self.meta)

    @bentoml.api
    async def churn_risk(
        self, customer_id: CustomerId | None = None, customer_ids: CustomerIds | None = None
    ) -> ChurnResponse:
        """Churn probability and risk band for one customer or a list."""
        ids = _ids(customer_id, customer_ids)
        pos = self.scorer.positions(ids)
        churn = self.scorer.churn(pos)
        results = [
            {"customer_id": c, "known": bool(p >= 0), "churn": _churn(churn[i])}
            for i, (c, p) in enumerate(zip(ids, pos, strict=True))
        ]
        return ChurnResponse(results=results, **self.meta)

    @bentoml.api
    async def score(
        self,
        customer_ids: CustomerIds,
        k: K = 10,
        channel: Channel | None = None,
        store_id: str | None = None,
    ) -> ScoreResponse:
        """All three predictions for a list of customers: the numbers of the single
        calls and of batch scoring."""
        s = self.scorer
        ids = list(dict.fromkeys(customer_ids))  # each customer once, in request order
        try:
            recs = s.recommend(ids, k, channel, store_id)
        except RequestError as exc:
            raise _bad(exc.field, exc.message) from None
        pos = s.positions(ids)
        churn = s.churn(pos)
        proba = s.next_channel(pos)
        bounds = np.searchsorted(recs.pos, np.arange(len(ids) + 1))
        results = [
            {
                "customer_id": c,
                "known": bool(pos[i] >= 0),
                "cold_start": bool(recs.cold_start[i]),
                "churn": _churn(churn[i]),
                "next_best_channel": self._channels(proba[i]),
                "items": self._items(recs, np.arange(bounds[i], bounds[i + 1])),
            }
            for i, c in enumerate(ids)
        ]
        return ScoreResponse(results=results, **self.meta)

    @bentoml.api
    async def ping(self) -> PingResponse:
        """Checks the token and says which snapshot and models answer (no scoring)."""
        return PingResponse(ok=True, **self.meta)

    # ------------------------------------------------------------------ helpers

    def _items(self, recs, rows: np.ndarray) -> list[dict]:
        ids = self.scorer.item_ids
        return [
            {
                "product_id": ids[recs.item[r]],
                "score": float(recs.score[r]),
                "reason": REASONS[recs.reason[r]],
            }
            for r in rows
        ]

    def _channels(self, proba: np.ndarray) -> list[dict]:
        if np.isnan(proba).any():
            return []
        ranked = channel_ranking(proba, self.scorer.channels)
        return [{"channel": c, "probability": p} for c, p in ranked]


def _churn(probability: float) -> dict:
    band = risk_band(np.array([probability]))[0]
    return {"probability": None if np.isnan(probability) else float(probability), "band": band}


def _ids(one: str | None, many: list[str] | None) -> list[str]:
    """Exactly one of customer_id / customer_ids."""
    if (one is None) == (many is None):
        raise _bad("customer_id", "give either customer_id or customer_ids (not both)")
    return [one] if one is not None else list(many)


Personalization.add_asgi_middleware(BearerAuth)

__all__ = ["Personalization", "RequestError"]
