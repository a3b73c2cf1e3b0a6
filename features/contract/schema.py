"""The data contract: one definition of every table, shared by loaders, tests and docs.

Column names are the contract (see ``docs/contract.md``). Every source
(synthetic, Complete Journey, a user's files) is converted into these tables.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Literal

import pyarrow as pa

CHANNELS: tuple[str, ...] = (
    "web",
    "app",
    "store",
    "email",
    "sms",
    "push",
    "direct_mail",
    "call_center",
)
ONLINE_CHANNELS: tuple[str, ...] = ("web", "app")
OUTREACH_CHANNELS: tuple[str, ...] = ("email", "sms", "push", "direct_mail")
EVENT_TYPES: tuple[str, ...] = (
    "purchase",
    "return",
    "view",
    "add_to_cart",
    "store_visit",
    "message_sent",
    "open",
    "click",
    "redeem",
)
LOYALTY_TIERS: tuple[str, ...] = ("none", "bronze", "silver", "gold")
IDENTIFIER_COLUMNS: tuple[str, ...] = ("email_hash", "loyalty_id", "device_id", "phone_hash")
"""Identifier columns the loaders know; events may carry any of them instead of customer_id."""
MAX_ID_LENGTH = 200
"""Longest id (characters) the service accepts; longer ids are refused at load."""

Kind = Literal["string", "timestamp", "category", "int", "float", "bool"]

_ARROW_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "category": pa.dictionary(pa.int8(), pa.string()),
    "int": pa.int64(),
    "float": pa.float64(),
    "bool": pa.bool_(),
}


@dataclass(frozen=True)
class Column:
    """One column of a contract table."""

    name: str
    kind: Kind
    description: str
    required: bool = False
    allowed: tuple[str, ...] | None = None

    @property
    def arrow_type(self) -> pa.DataType:
        return _ARROW_TYPES[self.kind]

    @property
    def is_id(self) -> bool:
        """An id or identifier (``*_id``, ``email_hash``...): at most MAX_ID_LENGTH, no NUL."""
        return self.kind == "string" and (
            self.name.endswith("_id") or self.name in IDENTIFIER_COLUMNS
        )


@dataclass(frozen=True)
class TableSchema:
    """A contract table: its columns, and the id column that must be unique (dimensions)."""

    name: str
    columns: tuple[Column, ...]
    key: str | None = None
    description: str = ""
    extra_columns: tuple[Column, ...] = field(default=())

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def required(self) -> list[str]:
        return [c.name for c in self.columns if c.required]

    def column(self, name: str) -> Column:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(f"table {self.name!r} has no column {name!r}")

    def arrow_schema(self, names: list[str] | None = None) -> pa.Schema:
        """Arrow schema for the given columns (all columns by default)."""
        cols = self.columns if names is None else [self.column(n) for n in names]
        return pa.schema([pa.field(c.name, c.arrow_type) for c in cols])


EVENTS = TableSchema(
    name="events",
    description="One row per interaction, every channel. Needs customer_id or an identifier.",
    columns=(
        Column("customer_id", "string", "resolved customer; empty when only identifiers are known"),
        Column("ts", "timestamp", "when it happened (UTC)", required=True),
        Column("channel", "category", "where it happened", required=True, allowed=CHANNELS),
        Column("event_type", "category", "what happened", required=True, allowed=EVENT_TYPES),
        Column("order_id", "string", "basket / order"),
        Column("product_id", "string", "product of the line"),
        Column("store_id", "string", "store of a store event; pickup store of a BOPIS order"),
        Column("quantity", "int", "units (never negative on a purchase)"),
        Column("amount", "float", "revenue in the shop's currency, negative for returns"),
        Column("discount", "float", "discount given on the line (positive), where known"),
        Column("campaign_id", "string", "campaign of an outreach event"),
        Column("email_hash", "string", "identifier: hashed account e-mail"),
        Column("loyalty_id", "string", "identifier: loyalty card number"),
        Column("device_id", "string", "identifier: web / app device"),
        Column("phone_hash", "string", "identifier: hashed phone number"),
        Column(
            "event_id",
            "string",
            "the event's own id: loading it again adds nothing; when empty, derived from "
            "the row's other columns (and the count of identical rows in the file)",
        ),
        Column(
            "recommendation_id",
            "string",
            "the recommendation_id of the /recommend answer that showed the product, on the "
            "click, view or purchase it led to (attribution: omni report recs)",
        ),
    ),
)

CUSTOMERS = TableSchema(
    name="customers",
    key="customer_id",
    description="One row per known customer, with consent per outreach channel.",
    columns=(
        Column("customer_id", "string", "customer id", required=True),
        Column("signup_ts", "timestamp", "when the customer signed up"),
        Column("loyalty_tier", "category", "loyalty tier", allowed=LOYALTY_TIERS),
        Column("home_store_id", "string", "the store the customer visits most / registered at"),
        Column("consent_email", "bool", "may be contacted by e-mail"),
        Column("consent_sms", "bool", "may be contacted by SMS"),
        Column("consent_push", "bool", "may be contacted by push notification"),
        Column("consent_direct_mail", "bool", "may be contacted by direct mail"),
        Column(
            "time_zone",
            "string",
            "IANA time zone, e.g. Europe/London: journeys count a contact's calendar days "
            "and quiet hours in it (empty: the shop's)",
        ),
    ),
)
TIME_ZONE_COLUMNS: frozenset[str] = frozenset({"time_zone"})
"""String columns whose values must be IANA time zone names."""

PRODUCTS = TableSchema(
    name="products",
    key="product_id",
    description="One row per product.",
    columns=(
        Column("product_id", "string", "product id", required=True),
        Column("category", "string", "product category"),
        Column("brand", "string", "brand"),
        Column("price", "float", "list price"),
    ),
)

STORES = TableSchema(
    name="stores",
    key="store_id",
    description="One row per store.",
    columns=(
        Column("store_id", "string", "store id", required=True),
        Column("region", "string", "region of the store"),
    ),
)

TABLES: dict[str, TableSchema] = {t.name: t for t in (EVENTS, CUSTOMERS, PRODUCTS, STORES)}
DIMENSION_TABLES: tuple[str, ...] = ("customers", "products", "stores")
CONSENT_COLUMNS: dict[str, str] = {ch: f"consent_{ch}" for ch in OUTREACH_CHANNELS}


def contract_markdown() -> str:
    """The contract as Markdown tables (used by `omni data contract` and docs/contract.md)."""
    lines: list[str] = []
    for table in TABLES.values():
        key = f" (unique key: `{table.key}`)" if table.key else ""
        lines += [f"**{table.name}**{key}: {table.description}", ""]
        lines += ["| column | type | required | notes |", "|---|---|---|---|"]
        for c in table.columns:
            notes = c.description
            if c.allowed:
                notes += ": " + ", ".join(c.allowed)
            lines.append(f"| {c.name} | {c.kind} | {'yes' if c.required else ''} | {notes} |")
        lines.append("")
    return "\n".join(lines)


def contract_document() -> dict[str, dict]:
    """The contract as plain data (`omni data contract --json`): per table its key,
    description and columns with type, required and allowed values."""
    return {
        table.name: {
            "key": table.key,
            "description": table.description,
            "columns": [
                {
                    "name": c.name,
                    "type": c.kind,
                    "required": c.required,
                    "allowed": list(c.allowed) if c.allowed else None,
                    "description": c.description,
                }
                for c in table.columns
            ],
        }
        for table in TABLES.values()
    }


def empty_frame(table: TableSchema):
    """An empty pandas frame with the table's columns and dtypes."""
    return table.arrow_schema().empty_table().to_pandas()


@functools.cache
def _pandas_dtypes(table: TableSchema) -> dict:
    """Each column's pandas dtype in :func:`empty_frame` (kept: building that frame costs
    milliseconds, which every live batch paid in :func:`with_every_column`)."""
    return empty_frame(table).dtypes.to_dict()


def as_contract_frame(df, table: TableSchema = EVENTS):
    """Give a frame the contract's pandas dtypes: fixed category lists, UTC timestamps.

    Categories always carry every allowed value (not only those present), so that
    codes mean the same thing in every frame, which the vectorised feature code relies on.
    """
    import pandas as pd

    out = df.copy(deep=False)
    for col in table.columns:
        if col.name not in out.columns:
            continue
        values = out[col.name]
        if col.kind == "category" and col.allowed:
            if isinstance(values.dtype, pd.CategoricalDtype):
                if tuple(values.cat.categories) != col.allowed:  # as validated: kept
                    out[col.name] = values.cat.set_categories(list(col.allowed))
            else:
                out[col.name] = pd.Categorical(values, categories=list(col.allowed))
        elif col.kind == "timestamp" and str(getattr(values.dtype, "tz", None)) != "UTC":
            out[col.name] = pd.to_datetime(values, utc=True)
    return out


def with_every_column(df, table: TableSchema = EVENTS):
    """``df`` in contract dtypes with the table's columns it lacks added empty (a batch of
    live events names only the fields it has); other columns are kept after them."""
    import pandas as pd

    dtypes = _pandas_dtypes(table)
    out = as_contract_frame(df, table)
    lacking = {
        name: pd.Series(index=out.index, dtype=dtypes[name])
        for name in table.names
        if name not in out.columns
    }
    if lacking:  # added together: one insert per column costs a millisecond each
        out = pd.concat([out, pd.DataFrame(lacking, index=out.index)], axis=1)
    extra = [c for c in out.columns if c not in table.names]
    return out[[*table.names, *extra]]
