"""Journey declarations and the contact policy: YAML files validated on load.

A file under ``<home>/journeys/`` holds one journey (a mapping with ``name``) or several
(``journeys: [...]``); ``policy.yaml`` there holds the contact policy. A bad file is
refused with its path, the journey and the field named (:class:`JourneyError`), and the
journeys loaded before stay in use: loading builds a new list, it never edits one.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import time
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from features.contract.schema import OUTREACH_CHANNELS

POLICY_FILE = "policy.yaml"
"""The contact policy's file name in the journeys folder (not a journey)."""
NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
"""A journey's name: it appears in ids, file names and the decision log."""


class JourneyError(ValueError):
    """A journey or policy file that cannot be used; the message names file, journey and
    field, one problem per line."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- triggers


class _Waits(_Strict):
    """A trigger that waits ``within_hours`` after an event and chases events up to
    ``lookback_hours`` old: the wait must fit in the look-back."""

    @model_validator(mode="after")
    def _window(self) -> _Waits:
        if self.lookback_hours <= self.within_hours:  # type: ignore[attr-defined]
            raise ValueError("lookback_hours must be larger than within_hours")
        return self


class CartAbandoned(_Waits):
    """An ``add_to_cart`` with no purchase of any product within ``within_hours`` after it;
    carts older than ``lookback_hours`` are not chased. Content: the abandoned products."""

    kind: Literal["cart_abandoned"]
    within_hours: float = Field(4.0, gt=0)
    lookback_hours: float = Field(48.0, gt=0)


class BrowseAbandoned(_Waits):
    """At least ``min_views`` product views with no cart or purchase within
    ``within_hours`` after the last one; older than ``lookback_hours``: not chased."""

    kind: Literal["browse_abandoned"]
    within_hours: float = Field(6.0, gt=0)
    lookback_hours: float = Field(48.0, gt=0)
    min_views: int = Field(2, ge=1)


class ChurnRisk(_Strict):
    """The churn probability crossed into ``band`` (or ``min_probability``) since the
    previous evaluation: customers already in it are not triggered again."""

    kind: Literal["churn_risk"]
    band: Literal["medium", "high"] = "high"
    min_probability: float | None = Field(None, gt=0, lt=1)
    """When set, the threshold instead of the band's lower edge."""


class PurchaseOverdue(_Strict):
    """Days since the last purchase at least ``min_ratio`` times the customer's usual gap
    (the ``purchase_overdue`` feature; customers with fewer than 2 purchase days: never)."""

    kind: Literal["purchase_overdue"]
    min_ratio: float = Field(1.5, gt=1)


class FirstStoreVisit(_Strict):
    """The customer's first ever store event happened within the last ``lookback_hours``."""

    kind: Literal["first_store_visit"]
    lookback_hours: float = Field(24.0, gt=0)


class Purchased(_Strict):
    """A purchase ``after_days`` ago (within one evaluation step, ``lookback_days``): the
    cross-sell moment. Content: what goes with the purchased products."""

    kind: Literal["purchase"]
    after_days: float = Field(3.0, ge=0)
    lookback_days: float = Field(1.0, gt=0)


Trigger = Annotated[
    CartAbandoned | BrowseAbandoned | ChurnRisk | PurchaseOverdue | FirstStoreVisit | Purchased,
    Field(discriminator="kind"),
]
TRIGGER_KINDS = (
    "cart_abandoned",
    "browse_abandoned",
    "churn_risk",
    "purchase_overdue",
    "first_store_visit",
    "purchase",
)


# --------------------------------------------------------------------------- the rest


class Condition(_Strict):
    """``feature op value`` over the customer's feature row (docs/feature_list.md)."""

    feature: str
    op: Literal["<", "<=", ">", ">=", "==", "!="]
    value: float


class Audience(_Strict):
    """Who may enter: every condition holds, the loyalty tier is listed (None: any), and
    the customer consented to at least one of the journey's channels (always checked)."""

    where: tuple[Condition, ...] = ()
    loyalty_tiers: tuple[Literal["none", "bronze", "silver", "gold"], ...] | None = None


class ChannelChoice(_Strict):
    """``next_best``: the consented channel of ``allowed`` the next-best-channel model
    ranks first; ``fixed``: ``allowed[0]`` (if consented)."""

    choose: Literal["next_best", "fixed"] = "next_best"
    allowed: tuple[str, ...] = OUTREACH_CHANNELS

    @field_validator("allowed")
    @classmethod
    def _outreach(cls, allowed: tuple[str, ...]) -> tuple[str, ...]:
        if not allowed:
            raise ValueError("name at least one channel")
        bad = [c for c in allowed if c not in OUTREACH_CHANNELS]
        if bad:
            raise ValueError(f"{bad} are not outreach channels ({', '.join(OUTREACH_CHANNELS)})")
        return allowed


class Content(_Strict):
    """``recommender``: ``k`` products from the recommender in the chosen channel's
    context; ``trigger``: the trigger's own products (the abandoned basket), at most k."""

    source: Literal["recommender", "trigger"] = "recommender"
    k: int = Field(3, ge=1, le=50)


class Journey(_Strict):
    """One journey: when it fires, for whom, on which channel, with what, how late and how
    important (a larger ``priority`` wins when several want the same customer)."""

    name: str
    description: str = ""
    trigger: Trigger
    audience: Audience = Audience()
    channel: ChannelChoice = ChannelChoice()
    content: Content = Content()
    delay_hours: float = Field(0.0, ge=0)
    priority: int = Field(0, ge=0, le=1000)
    holdout: float = Field(0.1, ge=0, lt=1)
    """Share of the journey's eligible customers kept out (stable per customer)."""
    min_uplift: float | None = None
    """With an uplift model for this journey: contact only where the predicted uplift is
    above this (None: no uplift gate)."""
    enabled: bool = True

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        if not NAME.match(name):
            raise ValueError("lowercase letters, digits and _, starting with a letter")
        return name


class Caps(_Strict):
    """At most this many messages per calendar day / per 7 calendar days (None: no cap)."""

    per_day: int | None = Field(None, ge=0)
    per_week: int | None = Field(None, ge=0)


class QuietHours(_Strict):
    """Local time span with no messages (may wrap midnight); a message due in it is sent
    at ``end`` instead."""

    start: time
    end: time


class ContactPolicy(_Strict):
    """One policy across all journeys and channels (``policy.yaml``)."""

    timezone: str = "UTC"
    """The shop's time zone: caps count calendar days, quiet hours are local, in it (or in
    the customer's ``time_zone`` where the customers table has one)."""
    caps: Caps = Caps(per_day=1, per_week=3)
    channel_caps: dict[str, Caps] = {}
    quiet_hours: QuietHours | None = QuietHours(start=time(21), end=time(8))
    suppress_after_purchase_hours: float = Field(24.0, ge=0)
    """No journey contacts a customer this soon after a purchase (except cart / cross-sell
    journeys listed in ``purchase_exempt``)."""
    purchase_exempt: tuple[str, ...] = ()
    suppress_after_contact_hours: float = Field(48.0, ge=0)
    """After a contact from a journey, journeys of lower priority wait this long."""
    global_holdout: float = Field(0.05, ge=0, lt=1)
    """Share of all customers never contacted by any journey (stable per customer)."""
    holdout_salt: str = "omni-journeys"
    max_share_per_run: float = Field(0.2, gt=0, le=1)
    """A journey that would contact more than this share of all customers in one run needs
    ``--yes`` (batch) and is refused in real time."""
    attribution_days: float = Field(7.0, gt=0)
    """A purchase within this long after a decision counts for it in the report."""
    webhooks: dict[str, str] = {}
    """Channel -> URL its sending system takes messages at (``omni journeys deliver``
    POSTs the outbox there); a channel without one is picked up from its outbox folder."""

    @field_validator("timezone")
    @classmethod
    def _zone(cls, zone: str) -> str:
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {zone!r} (e.g. Europe/London)") from None
        return zone

    @field_validator("channel_caps", "webhooks")
    @classmethod
    def _channels(cls, per_channel: dict) -> dict:
        bad = [c for c in per_channel if c not in OUTREACH_CHANNELS]
        if bad:
            raise ValueError(f"{bad} are not outreach channels ({', '.join(OUTREACH_CHANNELS)})")
        return per_channel

    @field_validator("webhooks")
    @classmethod
    def _urls(cls, webhooks: dict[str, str]) -> dict[str, str]:
        bad = [f"{c}: {u!r}" for c, u in webhooks.items() if not re.match(r"^https?://\S+$", u)]
        if bad:
            raise ValueError(f"not http(s) URLs: {', '.join(bad)}")
        return webhooks


# --------------------------------------------------------------------------- loading


def _problems(exc: ValidationError, file: Path, journey: str | None) -> list[str]:
    where = f"{file}" + (f", journey '{journey}'" if journey else "")
    lines = []
    for err in exc.errors():
        # the trigger's kind is pydantic's tag of the union, not a field: left out
        loc = [str(p) for p in err["loc"] if str(p) not in TRIGGER_KINDS]
        field = ".".join(loc) or "(the whole entry)"
        message = err["msg"].removeprefix("Value error, ")
        lines.append(f"{where}, field '{field}': {message}")
    return lines


def _read_yaml(file: Path) -> Any:
    import yaml

    try:
        text = file.read_text()
    except OSError as exc:
        raise JourneyError(f"{file}: cannot be read ({exc.strerror or exc})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f", line {mark.line + 1}" if mark is not None else ""
        raise JourneyError(
            f"{file}{line}: not valid YAML ({getattr(exc, 'problem', exc)})"
        ) from None


def read_journey_file(file: Path | str) -> list[Journey]:
    """The journeys of one file; :class:`JourneyError` naming file, journey and field."""
    file = Path(file)
    data = _read_yaml(file)
    if isinstance(data, dict) and "journeys" in data:
        if set(data) != {"journeys"} or not isinstance(data["journeys"], list):
            raise JourneyError(f"{file}: 'journeys' must be the only key, holding a list")
        entries = data["journeys"]
    elif isinstance(data, dict):
        entries = [data]
    else:
        raise JourneyError(f"{file}: expected a journey (a mapping with 'name') or 'journeys:'")
    journeys, problems = [], []
    for i, entry in enumerate(entries):
        label = entry.get("name") if isinstance(entry, dict) else None
        try:
            journeys.append(Journey.model_validate(entry))
        except ValidationError as exc:
            problems += _problems(exc, file, str(label) if label else f"#{i + 1}")
    if problems:
        raise JourneyError("\n".join(problems))
    return journeys


def yaml_files(folder: Path | str) -> list[Path]:
    """The ``*.yaml`` / ``*.yml`` files of ``folder``, sorted (none when it is missing)."""
    folder = Path(folder)
    return sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]) if folder.is_dir() else []


def journey_files(folder: Path | str) -> list[Path]:
    """The journey files of ``folder``: its YAML files but the policy."""
    return [f for f in yaml_files(folder) if f.name != POLICY_FILE]


def load_journeys(folder: Path | str) -> list[Journey]:
    """Every journey in ``folder``'s ``*.yaml`` / ``*.yml`` files (not the policy), sorted
    by name; :class:`JourneyError` listing every problem of every file, or a name used
    twice. A missing folder holds no journeys."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    journeys: list[Journey] = []
    problems: list[str] = []
    seen: dict[str, Path] = {}
    for file in journey_files(folder):
        try:
            found = read_journey_file(file)
        except JourneyError as exc:
            problems.append(str(exc))
            continue
        for journey in found:
            if journey.name in seen:
                problems.append(
                    f"{file}, journey '{journey.name}', field 'name': already used in "
                    f"{seen[journey.name]}"
                )
            seen[journey.name] = file
            journeys.append(journey)
    if problems:
        raise JourneyError("\n".join(problems))
    return sorted(journeys, key=lambda j: j.name)


def load_policy(folder: Path | str) -> ContactPolicy:
    """``policy.yaml`` of ``folder`` (the defaults where there is none)."""
    file = Path(folder) / POLICY_FILE
    if not file.exists():
        return ContactPolicy()
    data = _read_yaml(file)
    try:
        return ContactPolicy.model_validate(data or {})
    except ValidationError as exc:
        raise JourneyError("\n".join(_problems(exc, file, None))) from None


def check_features(journeys: Sequence[Journey], known: Sequence[str]) -> None:
    """:class:`JourneyError` when an audience condition names a feature the registry
    does not have (checked against the feature list, not at evaluation time)."""
    known_set = set(known)
    problems = [
        f"journey '{j.name}', field 'audience.where.{i}.feature': unknown feature "
        f"'{c.feature}' (see `omni features list`)"
        for j in journeys
        for i, c in enumerate(j.audience.where)
        if c.feature not in known_set
    ]
    if problems:
        raise JourneyError("\n".join(problems))
