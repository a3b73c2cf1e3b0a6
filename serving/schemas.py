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

from features.contract.schema import CHANNELS, EVENT_TYPES, MAX_ID_LENGTH, TABLES
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


Channel = Annotated[
    Literal[CHANNELS],  # the data contract's channels, in its order
    Field(description="A channel of the data contract; in a request, the channel asking."),
]
CustomerId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_ID_LENGTH,
        description="The unified customer id; an unknown id gets a cold-start answer.",
    ),
]
ProductId = Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH)]
StoreId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_ID_LENGTH,
        description="The store asking (point of sale) or the store context; in the store "
        "channel, only products it sold recently are recommended.",
    ),
]
K = Annotated[
    int,
    Field(ge=1, le=MAX_K, description=f"List length, 1 to {MAX_K}."),
    BeforeValidator(_json_integer),
]
CustomerIds = Annotated[
    list[CustomerId],
    Field(
        min_length=1,
        max_length=MAX_CUSTOMERS,
        description=f"Unified customer ids, 1 to {MAX_CUSTOMERS:,}; unknown ones get "
        "cold-start answers.",
    ),
]
Exclude = Annotated[
    list[ProductId],
    Field(
        max_length=MAX_EXCLUDE,
        description="Product ids never to return (in the basket, out of stock, ...).",
    ),
]
Category = Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH)]
Categories = Annotated[
    list[Category],
    Field(
        min_length=1,
        max_length=MAX_CATEGORIES,
        description="Only products of these categories (null: any).",
    ),
]


def _null_not_published(schema: dict[str, Any]) -> None:
    """For a field that may be left out but not given as null: publish the value's
    schema alone (no null, no default)."""
    (value,) = [s for s in schema.pop("anyOf") if s != {"type": "null"}]
    schema.pop("default", None)
    schema.update(value)


class RecommendRequest(BaseModel):
    """The body of ``POST /recommend``: one customer in one channel (and store), with the
    request's filters."""

    customer_id: CustomerId
    channel: Nullable[Channel] = Field(None, description="The channel asking (null: none given).")
    k: K = 10
    store_id: Nullable[StoreId] = Field(
        None,
        description="The store asking (point of sale) or the store context; in the store "
        "channel, only products it sold recently are recommended (null: none).",
    )
    exclude: Nullable[Exclude] = Field(
        None, description="Product ids never to return (in the basket, out of stock, ...)."
    )
    categories: Nullable[Categories] = Field(
        None, description="Only products of these categories (null: any)."
    )


class CustomersRequest(BaseModel):
    """One customer or a list: exactly one of ``customer_id`` and ``customer_ids``, and
    nothing else. Said with min/maxProperties rather than ``oneOf``: on ``oneOf`` here
    schemathesis' coverage phase stopped with an internal error (a recursion error in
    Python's ``ast`` while it described a strategy)."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"minProperties": 1, "maxProperties": 1}
    )

    customer_id: CustomerId | None = Field(
        default=None,
        description="One customer (or give customer_ids).",
        json_schema_extra=_null_not_published,
    )
    customer_ids: CustomerIds | None = Field(
        default=None,
        description=f"Up to {MAX_CUSTOMERS:,} customers (or give customer_id).",
        json_schema_extra=_null_not_published,
    )

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

    product_id: str = Field(description="The product, as the products table names it.")
    score: float = Field(description="Ranker score; compare within one list only.")
    reason: str = Field(description="buy again, similar customers, popular in your store, ...")


class ChurnRisk(BaseModel):
    """Probability of no purchase in the model's horizon, and its band."""

    probability: Nullable[float] = Field(description="null for a customer without history")
    band: Literal["low", "medium", "high", "unknown"] = Field(
        description="low < 0.3 <= medium < 0.6 <= high; unknown without history"
    )


class ChannelScore(BaseModel):
    """A consented channel and the probability that the next conversion comes through it."""

    channel: str = Field(description="A channel the customer consented to.")
    probability: float = Field(description="Consented channels' probabilities sum to 1.")


class Snapshot(BaseModel):
    """Which data and models produced an answer."""

    as_of: str = Field(description="Features and factors use only events before this time.")
    model_versions: dict[str, str] = Field(
        description="Registered model name -> version that answered."
    )


class RecommendResponse(Snapshot):
    """Ranked products for one customer, with the customer's other two predictions."""

    recommendation_id: str = Field(
        description="This answer's id: send it back on the events it leads to (a click, "
        "view or purchase of a product shown) so they are attributed to it."
    )
    customer_id: str = Field(description="As asked.")
    channel: Nullable[str] = Field(description="as asked (null: none given)")
    store_id: Nullable[str] = Field(description="as asked (null: none given)")
    cold_start: bool = Field(description="True: no history, the list is popularity.")
    items: list[Item] = Field(description="Best first, at most k, each with its reason.")
    churn: ChurnRisk = Field(description="The customer's churn risk.")
    next_best_channel: list[ChannelScore] = Field(description="Consented channels, best first.")


class ChannelResult(BaseModel):
    customer_id: str = Field(description="As asked.")
    known: bool = Field(description="False: no history, no channels.")
    channels: list[ChannelScore] = Field(description="Consented channels, best first.")


class ChannelResponse(Snapshot):
    results: list[ChannelResult] = Field(description="One per customer asked, in order.")


class ChurnResult(BaseModel):
    customer_id: str = Field(description="As asked.")
    known: bool = Field(description="False: no history (band unknown).")
    churn: ChurnRisk = Field(description="The customer's churn risk.")


class ChurnResponse(Snapshot):
    results: list[ChurnResult] = Field(description="One per customer asked, in order.")


class CustomerScore(BaseModel):
    """All three predictions for one customer."""

    customer_id: str = Field(description="As asked.")
    known: bool = Field(description="False: no history (churn and channels unknown).")
    cold_start: bool = Field(description="True: the list is popularity.")
    churn: ChurnRisk = Field(description="The customer's churn risk.")
    next_best_channel: list[ChannelScore] = Field(description="Consented channels, best first.")
    items: list[Item] = Field(description="Best first, at most k, each with its reason.")


class ScoreResponse(Snapshot):
    results: list[CustomerScore] = Field(description="One per distinct customer, in order.")


class PingResponse(Snapshot):
    ok: bool = Field(description="True: the token (if any) was right and models are loaded.")
    worker: int = Field(description="process id of the worker that answered")
    live_events: Nullable[int] = Field(
        description="live events in this worker's state (null: live events are off)"
    )


EventType = Literal[EVENT_TYPES]  # the data contract's event types
Text = Annotated[str, Field(max_length=MAX_ID_LENGTH)]
Int64 = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]
"""An integer the events store can hold (JSON allows any size)."""


def _note(column: str) -> str:
    """An events column's description in the data contract (docs/contract.md)."""
    (found,) = [c.description for c in TABLES["events"].columns if c.name == column]
    return found


class LiveEvent(BaseModel):
    """One event of the data contract (docs/data_contract.md): who (``customer_id`` or an
    identifier), when, where and what; the rest as the event has it. ``event_id`` makes a
    retry idempotent (derived from the fields when left out)."""

    model_config = ConfigDict(extra="forbid")

    ts: str = Field(description="When it happened, ISO 8601 (UTC unless it has an offset).")
    channel: Channel
    event_type: EventType = Field(description=_note("event_type"))
    customer_id: Text | None = Field(None, description=_note("customer_id"))
    event_id: Text | None = Field(None, description=_note("event_id"))
    order_id: Text | None = Field(None, description=_note("order_id"))
    product_id: Text | None = Field(None, description=_note("product_id"))
    store_id: Text | None = Field(None, description=_note("store_id"))
    quantity: Int64 | None = Field(None, description=_note("quantity"))
    amount: float | None = Field(None, description=_note("amount"))
    discount: float | None = Field(None, description=_note("discount"))
    campaign_id: Text | None = Field(None, description=_note("campaign_id"))
    email_hash: Text | None = Field(None, description=_note("email_hash"))
    loyalty_id: Text | None = Field(None, description=_note("loyalty_id"))
    device_id: Text | None = Field(None, description=_note("device_id"))
    phone_hash: Text | None = Field(None, description=_note("phone_hash"))
    recommendation_id: Text | None = Field(None, description=_note("recommendation_id"))


LiveEvents = Annotated[
    list[LiveEvent],
    Field(
        min_length=1,
        max_length=MAX_EVENTS,
        description=f"1 to {MAX_EVENTS:,} events; all are taken or none (a 400 names the "
        "first bad one by its index and field).",
    ),
]


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

    error: str = Field(description="invalid request, unauthorized, not found, ...")
    detail: str = Field(description="What was wrong, naming the field.")
