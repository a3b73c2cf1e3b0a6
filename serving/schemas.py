"""Request field types and response models of the service (its published OpenAPI schema).

Limits come from :mod:`serving.rules`, so the service and batch scoring agree on them.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from features.schema import MAX_ID_LENGTH
from serving.rules import MAX_CATEGORIES, MAX_CUSTOMERS, MAX_EXCLUDE, MAX_K

Channel = Literal["web", "app", "store", "email", "sms", "push", "direct_mail", "call_center"]
CustomerId = Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH)]
ProductId = Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH)]
K = Annotated[int, Field(ge=1, le=MAX_K, description=f"List length, 1 to {MAX_K}.")]
CustomerIds = Annotated[list[CustomerId], Field(min_length=1, max_length=MAX_CUSTOMERS)]
Exclude = Annotated[list[ProductId], Field(max_length=MAX_EXCLUDE)]
Category = Annotated[str, Field(min_length=1, max_length=200)]
Categories = Annotated[list[Category], Field(max_length=MAX_CATEGORIES)]


class Item(BaseModel):
    """One recommended product."""

    product_id: str
    score: float = Field(description="Ranker score; compare within one list only.")
    reason: str = Field(description="buy again, similar customers, popular in your store, ...")


class ChurnRisk(BaseModel):
    """Probability of no purchase in the model's horizon, and its band."""

    probability: float | None = Field(description="null for a customer without history")
    band: Literal["low", "medium", "high", "unknown"]


class ChannelScore(BaseModel):
    """A consented channel and the probability that the next conversion comes through it."""

    channel: str
    probability: float


class Snapshot(BaseModel):
    """Which data and models produced an answer."""

    as_of: str = Field(description="Features and factors use only events before this time.")
    model_versions: dict[str, str]


class RecommendResponse(Snapshot):
    """Ranked products for one customer, with the customer's other two predictions."""

    customer_id: str
    channel: str | None
    store_id: str | None
    cold_start: bool = Field(description="True: no history, the list is popularity.")
    items: list[Item]
    churn: ChurnRisk
    next_best_channel: list[ChannelScore]


class ChannelResult(BaseModel):
    customer_id: str
    known: bool
    channels: list[ChannelScore]


class ChannelResponse(Snapshot):
    results: list[ChannelResult]


class ChurnResult(BaseModel):
    customer_id: str
    known: bool
    churn: ChurnRisk


class ChurnResponse(Snapshot):
    results: list[ChurnResult]


class CustomerScore(BaseModel):
    """All three predictions for one customer."""

    customer_id: str
    known: bool
    cold_start: bool
    churn: ChurnRisk
    next_best_channel: list[ChannelScore]
    items: list[Item]


class ScoreResponse(Snapshot):
    results: list[CustomerScore]


class PingResponse(Snapshot):
    ok: bool


class ErrorResponse(BaseModel):
    """A client mistake: which field, and what is wrong with it."""

    error: str
    field: str | None = None
