"""A request and an answer for every endpoint, as the published OpenAPI document shows
them (:mod:`serving.published_schema`); a test validates each against its endpoint's
request and answer models, so an example cannot drift from what the service takes."""

from __future__ import annotations

from typing import Any

_SNAPSHOT = {
    "as_of": "2026-11-30T00:00:00+00:00",
    "model_versions": {"churn": "3", "next_best_channel": "2", "recommender": "5"},
}
_CHURN = {"probability": 0.18, "band": "low"}
_CHANNELS = [
    {"channel": "email", "probability": 0.61},
    {"channel": "app", "probability": 0.27},
    {"channel": "web", "probability": 0.12},
]
_ITEMS = [
    {"product_id": "P000184", "score": 2.41, "reason": "buy again"},
    {"product_id": "P001032", "score": 1.87, "reason": "similar customers"},
    {"product_id": "P000057", "score": 1.12, "reason": "popular in your store"},
]
_UNKNOWN = {"probability": None, "band": "unknown"}

REQUESTS: dict[str, dict[str, Any]] = {
    "/recommend": {
        "customer_id": "C0000001",
        "channel": "store",
        "k": 3,
        "store_id": "S012",
        "exclude": ["P000311"],
    },
    "/next_best_channel": {"customer_id": "C0000001"},
    "/churn_risk": {"customer_ids": ["C0000001", "C0009999"]},
    "/score": {"customer_ids": ["C0000001"], "k": 3, "channel": "email"},
    "/ping": {},
    "/events": {
        "events": [
            {
                "event_id": "web-7f3a9c",
                "ts": "2026-12-01T10:15:00Z",
                "channel": "web",
                "event_type": "add_to_cart",
                "customer_id": "C0000001",
                "product_id": "P000184",
                "quantity": 1,
            }
        ]
    },
}

ANSWERS: dict[str, dict[str, Any]] = {
    "/recommend": {
        **_SNAPSHOT,
        "recommendation_id": "3f9a0c1b2d4e-1a7",
        "customer_id": "C0000001",
        "channel": "store",
        "store_id": "S012",
        "cold_start": False,
        "items": _ITEMS,
        "churn": _CHURN,
        "next_best_channel": _CHANNELS,
    },
    "/next_best_channel": {
        **_SNAPSHOT,
        "results": [{"customer_id": "C0000001", "known": True, "channels": _CHANNELS}],
    },
    "/churn_risk": {
        **_SNAPSHOT,
        "results": [
            {"customer_id": "C0000001", "known": True, "churn": _CHURN},
            {"customer_id": "C0009999", "known": False, "churn": _UNKNOWN},
        ],
    },
    "/score": {
        **_SNAPSHOT,
        "results": [
            {
                "customer_id": "C0000001",
                "known": True,
                "cold_start": False,
                "churn": _CHURN,
                "next_best_channel": _CHANNELS,
                "items": _ITEMS,
            }
        ],
    },
    "/ping": {**_SNAPSHOT, "ok": True, "worker": 4242, "live_events": 0},
    "/events": {"accepted": 1, "duplicates": 0, "customer_ids": ["C0000001"]},
}

TITLE = "Omnichannel personalization"
DESCRIPTION = (
    "Scored recommendations, churn risk and the next best channel for a retailer's "
    "customers, from one event log across web, app, stores, email and SMS. Every answer "
    "says which snapshot (`as_of`) and model versions produced it. Scoring endpoints take "
    "a JSON body and, when the service has a token, `Authorization: Bearer <token>`; "
    'refusals are `{"error", "detail"}` with the detail naming the field.'
)
