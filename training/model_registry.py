"""Registered models and their aliases: the champion gate, promotion and rollback.

Each registered version carries, as version tags, the metric it was gated on, its
value and the holdout it was measured on, so the gate compares a new version with the
champion without looking up runs. ``@champion`` is what serving loads;
``@challenger`` is the latest version that did not beat it.

**Same holdout rule.** Two values are compared only when both were measured on the
same holdout (same cutoffs and data fingerprint, as given by the job). When the
holdouts differ the gate does not compare numbers from different data: the new
version becomes ``@challenger`` and the reason says what differs. The job can instead
re-score the champion on the new holdout and pass ``champion_value``; a person can
``promote`` by hand.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from features.settings import Settings
from training.job_names import MODEL_PURPOSES

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

MODEL_NAMES: tuple[str, ...] = ("churn", "next_best_channel", "recommender")
CHAMPION = "champion"
CHALLENGER = "challenger"

TAG_METRIC = "gate.metric"
TAG_VALUE = "gate.value"
TAG_HIGHER = "gate.higher_is_better"
TAG_HOLDOUT = "gate.holdout"
TAG_DECISION = "gate.decision"
TAG_REASON = "gate.reason"
TAG_PREVIOUS = "previous_champion"
TAG_ROLLED_BACK = "rolled_back_at"


class RegistryError(ValueError):
    """A registry request that cannot be honoured (unknown model or version ...)."""


@dataclass(frozen=True)
class GateDecision:
    """What the gate did with a new version, and why (one line for humans)."""

    name: str
    version: int
    alias: str
    reason: str
    previous_champion: int | None = None

    @property
    def promoted(self) -> bool:
        return self.alias == CHAMPION


@dataclass(frozen=True)
class ModelRow:
    """One registered version as `omni models list` shows it."""

    name: str
    version: int
    aliases: tuple[str, ...]
    metric: str | None
    value: float | None
    created: dt.datetime
    reason: str | None
    run_id: str | None


def check_name(name: str) -> str:
    """The name if it is one of ours; a clear error otherwise."""
    if name not in MODEL_NAMES:
        raise RegistryError(f"unknown model {name!r}: expected one of {', '.join(MODEL_NAMES)}")
    return name


def _client(settings: Settings) -> MlflowClient:
    from training.tracking import use_tracking

    uri = use_tracking(settings)  # first: a server that does not answer fails in seconds
    from mlflow import MlflowClient

    return MlflowClient(uri)


def holdout_text(holdout: Mapping[str, Any] | None) -> str:
    """Canonical JSON of a holdout definition (dates as ISO text, sorted keys)."""
    from training.tracking import param_text

    if not holdout:
        return ""
    return json.dumps({str(k): param_text(v) for k, v in holdout.items()}, sort_keys=True)


def register_with_gate(
    settings: Settings,
    name: str,
    run_id: str,
    model_uri: str,
    metric: str,
    value: float,
    higher_is_better: bool = True,
    holdout: Mapping[str, Any] | None = None,
    champion_value: float | None = None,
) -> GateDecision:
    """Register a new version of ``name``; make it ``@champion`` only if it beats the champion.

    ``model_uri`` is what ``log_python_model`` returned (``models:/m-...``), a
    ``runs:/`` URI, or an artifact path inside ``run_id``. ``holdout`` describes the
    evaluation data (e.g. ``{"test_cutoff": ..., "horizon_days": 60, "data_fingerprint":
    ...}``); see the module docstring for what happens when it differs from the
    champion's. ``champion_value``: the champion's metric re-measured by the job on this
    holdout, which makes the comparison valid even when the holdouts differ.
    """
    import mlflow

    check_name(name)
    if not math.isfinite(float(value)):
        raise RegistryError(f"{name}: {metric} is {value}: cannot gate on a non-finite metric")
    client = _client(settings)
    champion = _alias_version(client, name, CHAMPION)
    if "://" not in model_uri and not model_uri.startswith(("models:/", "runs:/")):
        model_uri = f"runs:/{run_id}/{model_uri}"
    tags = {
        TAG_METRIC: metric,
        TAG_VALUE: repr(float(value)),
        TAG_HIGHER: str(bool(higher_is_better)).lower(),
        TAG_HOLDOUT: holdout_text(holdout),
        "run_id": run_id,
    }
    version = int(mlflow.register_model(model_uri, name, tags=tags).version)
    alias, reason = _decide(
        name,
        version,
        metric,
        float(value),
        higher_is_better,
        holdout,
        champion,
        champion_value,
        settings.gate_min_improvement,
    )
    previous = int(champion.version) if champion is not None else None
    if alias == CHAMPION:
        _set_champion(client, name, version, previous)
        if _alias_version(client, name, CHALLENGER) is not None:
            client.delete_registered_model_alias(name, CHALLENGER)  # it challenged the old one
    else:
        client.set_registered_model_alias(name, CHALLENGER, str(version))
    client.set_model_version_tag(name, str(version), TAG_DECISION, alias)
    client.set_model_version_tag(name, str(version), TAG_REASON, reason)
    card = model_card(name, metric, float(value), holdout, reason, run_id)
    client.update_model_version(name, str(version), description=card)
    if name in MODEL_PURPOSES and not client.get_registered_model(name).description:
        client.update_registered_model(name, description=MODEL_PURPOSES[name])
    return GateDecision(name, version, alias, reason, previous)


def model_card(
    name: str,
    metric: str,
    value: float,
    holdout: Mapping[str, Any] | None,
    reason: str,
    run_id: str,
) -> str:
    """A version's description (Markdown): what it predicts and for whom, its gate metric
    and decision, and the data and cutoffs it was trained and tested on."""
    from training.tracking import param_text

    holdout = dict(holdout or {})
    data = holdout.pop("data_fingerprint", None)
    lines = [
        MODEL_PURPOSES.get(name, name),
        "",
        f"- Gate: {metric} {_fmt(value)}: {reason}.",
        "- Cutoffs: " + (", ".join(f"{k} {param_text(v)}" for k, v in holdout.items()) or "n/a"),
        f"- Data: events with fingerprint {data or 'n/a'} (the run's dataset input).",
        f"- Run: {run_id}.",
    ]
    return "\n".join(lines)


def _decide(
    name: str,
    version: int,
    metric: str,
    value: float,
    higher_is_better: bool,
    holdout: Mapping[str, Any] | None,
    champion: ModelVersion | None,
    champion_value: float | None,
    min_improvement: float = 0.0,
) -> tuple[str, str]:
    """(alias, reason) for a new version against the current champion: promoted when it
    beats it by more than ``min_improvement`` (``OMNI_GATE_MIN_IMPROVEMENT``)."""
    new = f"v{version} {metric} {_fmt(value)}"
    if champion is None:
        return CHAMPION, f"{new}: first {name} champion"
    old = f"champion v{champion.version}"
    if champion_value is None:
        if champion.tags.get(TAG_METRIC) != metric or TAG_VALUE not in champion.tags:
            return CHALLENGER, (
                f"{new} not compared: {old} was not gated on {metric} "
                f"({champion.tags.get(TAG_METRIC) or 'no metric recorded'}); "
                f"promote by hand if it is better"
            )
        differ = _holdout_difference(holdout_text(holdout), champion.tags.get(TAG_HOLDOUT, ""))
        if differ:
            return CHALLENGER, (
                f"{new} not compared with {old} {_fmt(float(champion.tags[TAG_VALUE]))}: "
                f"holdouts differ ({differ}); re-score the champion on this holdout "
                f"or promote by hand"
            )
        champion_value = float(champion.tags[TAG_VALUE])
        old_text = f"{old} {_fmt(champion_value)}"
    else:
        old_text = f"{old} {_fmt(champion_value)} (re-scored on this holdout)"
    gain = value - champion_value if higher_is_better else champion_value - value
    better = gain > min_improvement
    verb = "beat" if better else "did not beat"
    by = ""
    if min_improvement:
        by = f" by more than {_fmt(min_improvement)} (OMNI_GATE_MIN_IMPROVEMENT)"
    return (CHAMPION if better else CHALLENGER), f"{new} {verb} {old_text}{by}"


def _holdout_difference(new: str, old: str) -> str:
    """Empty if the two holdout definitions agree; else what differs, for the reason."""
    if new == old:
        return ""
    a = json.loads(new) if new else {}
    b = json.loads(old) if old else {}
    parts = [
        f"{k} {a.get(k, '(none)')} vs {b.get(k, '(none)')}"
        for k in sorted(a.keys() | b.keys())
        if a.get(k) != b.get(k)
    ]
    return "; ".join(parts) + " for the champion"


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def _alias_version(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if exc.error_code in ("INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST"):
            return None
        raise


def champion_version(settings: Settings, name: str) -> int | None:
    """The version behind ``@champion`` (None when there is none yet)."""
    if not _has_store(settings):
        return None
    version = _alias_version(_client(settings), check_name(name), CHAMPION)
    return int(version.version) if version is not None else None


def _set_champion(client: MlflowClient, name: str, version: int, previous: int | None) -> None:
    """Move ``@champion``, remembering the one it replaces so rollback can restore it."""
    if previous is not None and previous != version:
        client.set_model_version_tag(name, str(version), TAG_PREVIOUS, str(previous))
    client.set_registered_model_alias(name, CHAMPION, str(version))


def _versions(client: MlflowClient, name: str) -> list[ModelVersion]:
    return sorted(client.search_model_versions(f"name = '{name}'"), key=lambda v: int(v.version))


def _existing_version(client: MlflowClient, name: str, version: int | str) -> ModelVersion:
    """The version of a registered model, or an error naming what exists."""
    text = str(version).lower().removeprefix("v")
    if not text.isdigit():
        raise RegistryError(f"version must be a number like 3 (or v3), got {version!r}")
    versions = _versions(client, name)
    if not versions:
        raise RegistryError(f"no {name} model is registered yet: train one first")
    for v in versions:
        if int(v.version) == int(text):
            return v
    known = ", ".join(str(v.version) for v in versions)
    raise RegistryError(f"{name} has no version {text} (versions: {known})")


def _has_store(settings: Settings) -> bool:
    """False for a local SQLite store that does not exist yet (nothing to read)."""
    from training.tracking import sqlite_path

    db = sqlite_path(settings.tracking_uri)
    return db is None or db.exists()


def promote(settings: Settings, name: str, version: int | str) -> str:
    """Make a version ``@champion`` by hand; the replaced champion is kept for rollback."""
    check_name(name)
    if not _has_store(settings):
        raise RegistryError(f"no {name} model is registered yet: train one first")
    client = _client(settings)
    target = int(_existing_version(client, name, version).version)
    champion = _alias_version(client, name, CHAMPION)
    previous = int(champion.version) if champion is not None else None
    if previous == target:
        return f"{name}: v{target} is already champion"
    _set_champion(client, name, target, previous)
    challenger = _alias_version(client, name, CHALLENGER)
    if challenger is not None and int(challenger.version) == target:
        client.delete_registered_model_alias(name, CHALLENGER)
    client.set_model_version_tag(name, str(target), TAG_DECISION, CHAMPION)
    client.set_model_version_tag(name, str(target), TAG_REASON, "promoted by hand")
    was = f"v{previous}" if previous is not None else "none"
    return f"{name}@champion: v{target} (was {was})"


def rollback(settings: Settings, name: str) -> str:
    """Give ``@champion`` back to the version it replaced; repeat to go further back."""
    check_name(name)
    if not _has_store(settings):
        raise RegistryError(f"no {name} model is registered yet: train one first")
    client = _client(settings)
    champion = _alias_version(client, name, CHAMPION)
    if champion is None:
        raise RegistryError(f"{name} has no champion to roll back")
    previous = champion.tags.get(TAG_PREVIOUS)
    if not previous:
        raise RegistryError(
            f"{name} champion v{champion.version} replaced no earlier champion: "
            "nothing to roll back to (promote a version instead)"
        )
    try:
        target = _existing_version(client, name, previous)
    except RegistryError as exc:
        raise RegistryError(f"cannot roll back {name} to v{previous}: {exc}") from None
    client.set_registered_model_alias(name, CHAMPION, str(target.version))
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    client.set_model_version_tag(name, str(champion.version), TAG_ROLLED_BACK, now)
    return f"{name}@champion: v{target.version} (rolled back from v{champion.version})"


def list_models(settings: Settings, name: str | None = None) -> list[ModelRow]:
    """Every registered version (of ``name``, or of all models), newest first per model."""
    if name is not None:
        check_name(name)
    if not _has_store(settings):
        return []
    client = _client(settings)
    if name is not None:
        names = [name] if client.search_registered_models(f"name = '{name}'") else []
    else:
        names = sorted(m.name for m in client.search_registered_models())
    rows = []
    for model in names:
        aliases: dict[int, list[str]] = {}
        for alias, v in client.get_registered_model(model).aliases.items():
            aliases.setdefault(int(v), []).append(alias)
        for v in reversed(_versions(client, model)):
            tags = v.tags or {}
            value = tags.get(TAG_VALUE)
            rows.append(
                ModelRow(
                    name=model,
                    version=int(v.version),
                    aliases=tuple(sorted(aliases.get(int(v.version), []))),
                    metric=tags.get(TAG_METRIC),
                    value=float(value) if value is not None else None,
                    created=dt.datetime.fromtimestamp(v.creation_timestamp / 1000, dt.UTC),
                    reason=tags.get(TAG_REASON),
                    run_id=v.run_id,
                )
            )
    return rows
