"""Request field types and response models of the service (its published OpenAPI schema).

Limits come from :mod:`serving.rules`, so the service and batch scoring agree on them. The
schema BentoML publishes is OpenAPI 3.0; what it says is what the service does (a test runs
schemathesis with every check against a real server): optional fields are ``nullable``
(null means "not given"), integers are JSON integers, and /next_best_channel and
/churn_risk take exactly one of ``customer_id`` / ``customer_ids``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError

from features.contract.schema import MAX_ID_LENGTH
from serving.rules import MAX_CATEGORIES, MAX_CUSTOMERS, MAX_EVENTS, MAX_EXCLUDE, MAX_K

T = TypeVar("T")


class OpenAPINullable:
    """Publishes ``X | None`` the OpenAPI 3.0 way, ``{X..., "nullable": true}`` (with null
    in an ``enum``), instead of pydantic's ``anyOf: [X, {"type": "null"}]``, which BentoML
    flattens to ``X`` alone: the schema then said string where the service answered null."""

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        if "anyOf" not in schema:  # rewritten already (a list's items are generated twice)
            return schema
        (value,) = [s for s in schema.pop("anyOf") if s != {"type": "null"}]
        schema = {**value, **schema, "nullable": True}
        if "enum" in schema:
            schema["enum"] = [*schema["enum"], None]
        return schema


Nullable = Annotated[T | None, OpenAPINullable()]
"""An optional value that may also be given (or answered) as null."""


def _json_integer(value: Any) -> Any:
    """JSON integers only (``10`` and ``10.0``): pydantic's lax mode would also take
    ``true`` and ``"10"``, which the published schema (type integer) calls invalid."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PydanticCustomError("int_type", "Input should be a valid integer")
    return value


Channel = Literal["web", "app", "store", "email", "sms", "push", "direct_mail", "call_center"]
CustomerId = Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH)]
ProductId = Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH)]
StoreId = Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH)]
K = Annotated[
    int,
    Field(ge=1, le=MAX_K, description=f"List length, 1 to {MAX_K}."),
    BeforeValidator(_json_integer),
]
CustomerIds = Annotated[list[CustomerId], Field(min_length=1, max_length=MAX_CUSTOMERS)]
Exclude = Annotated[list[ProductId], Field(max_length=MAX_EXCLUDE)]
Category = Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH)]
Categories = Annotated[list[Category], Field(min_length=1, max_length=MAX_CATEGORIES)]


def _null_not_published(schema: dict[str, Any]) -> None:
    """For a field that may be left out but not given as null: publish the value's
    schema alone (no null, no default)."""
    (value,) = [s for s in schema.pop("anyOf") if s != {"type": "null"}]
    schema.pop("default", None)
    schema.update(value)


class CustomersRequest(BaseModel):
    """One customer or a list: exactly one of ``customer_id`` and ``customer_ids``, and
    nothing else. Said with min/maxProperties rather than ``oneOf``: on ``oneOf`` here
    schemathesis' coverage phase stopped with an internal error (a recursion error in
    Python's ``ast`` while it described a strategy)."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"minProperties": 1, "maxProperties": 1}
    )

    customer_id: CustomerId | None = Field(default=None, json_schema_extra=_null_not_published)
    customer_ids: CustomerIds | None = Field(default=None, json_schema_extra=_null_not_published)

    @model_validator(mode="after")
    def _exactly_one(self) -> CustomersRequest:
        given = self.model_fields_set
        if len(given) != 1:
            raise PydanticCustomError(
                "customers", "give either customer_id or customer_ids (not both)"
            )
        (name,) = given
        if getattr(self, name) is None:
            raise PydanticCustomError("customers", "{name} may not be null", {"name": name})
        return self


class Item(BaseModel):
    """One recommended product."""

    product_id: str
    score: float = Field(description="Ranker score; compare within one list only.")
    reason: str = Field(description="buy again, similar customers, popular in your store, ...")


class ChurnRisk(BaseModel):
    """Probability of no purchase in the model's horizon, and its band."""

    probability: Nullable[float] = Field(description="null for a customer without history")
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
    channel: Nullable[str] = Field(description="as asked (null: none given)")
    store_id: Nullable[str] = Field(description="as asked (null: none given)")
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
    worker: int = Field(description="process id of the worker that answered")
    live_events: Nullable[int] = Field(
        description="live events in this worker's state (null: live events are off)"
    )


EventType = Literal[
    "purchase", "return", "view", "add_to_cart", "store_visit",
    "message_sent", "open", "click", "redeem",
]  # fmt: skip
Text = Annotated[str, Field(max_length=MAX_ID_LENGTH)]


class LiveEvent(BaseModel):
    """One event of the data contract (docs/data_contract.md): who (``customer_id`` or an
    identifier), when, where and what; the rest as the event has it. ``event_id`` makes a
    retry idempotent (derived from the fields when left out)."""

    model_config = ConfigDict(extra="forbid")

    ts: str = Field(description="When it happened, ISO 8601 (UTC unless it has an offset).")
    channel: Channel
    event_type: EventType
    customer_id: Text | None = None
    event_id: Text | None = None
    order_id: Text | None = None
    product_id: Text | None = None
    store_id: Text | None = None
    quantity: int | None = None
    amount: float | None = None
    discount: float | None = None
    campaign_id: Text | None = None
    email_hash: Text | None = None
    loyalty_id: Text | None = None
    device_id: Text | None = None
    phone_hash: Text | None = None


LiveEvents = Annotated[list[LiveEvent], Field(min_length=1, max_length=MAX_EVENTS)]


class EventsResponse(BaseModel):
    """A batch taken: journaled (durable) and queued for the online state."""

    accepted: int = Field(description="New events in the batch.")
    duplicates: int = Field(description="Events already taken (same event_id): counted once.")
    customer_ids: list[Nullable[str]] = Field(
        description="The customer each event landed on after identity resolution, in order."
    )


class ErrorResponse(BaseModel):
    """A refused request (4xx): what went wrong, and the details naming the field. The
    shape of BentoML's published error schemas (``InvalidArgument``, ``NotFound``)."""

    error: str
    detail: str
