"""Train a journey's uplift model from its decision log: the contacted and the journey's
holdout customers, their features as of each decision, whether they bought within the
attribution window. Trained on the earlier decisions, measured on the later ones (Qini,
uplift among the top k% against contacting everyone), tracked in MLflow, and saved
beside the journeys for `omni journeys run` to use."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from features.settings import Settings
from training.uplift.metrics import qini_curve, uplift_at_k
from training.uplift.model import TwoModelUplift

JOB = "journey-uplift"
"""The MLflow experiment's job name (``omni-journey-uplift``)."""
MODELS = "uplift"
"""Folder of the trained models in the journeys folder: ``<journey>.pkl``."""
TOP_SHARES = (0.1, 0.3, 0.5)
"""Shares of the evaluation period's customers targeted by score, for uplift-at-k."""
NOT_FEATURES = ("loyalty_tier_name",)


@dataclass
class UpliftResult:
    """A trained journey uplift model and how it did on the later period."""

    journey: str
    model: TwoModelUplift
    split: pd.Timestamp
    train_rows: int
    test_rows: int
    metrics: dict[str, float]
    path: Path | None = None
    run_id: str | None = None


def examples(
    events: pd.DataFrame,
    customers: pd.DataFrame | None,
    decisions: pd.DataFrame,
    window: pd.Timedelta,
) -> pd.DataFrame:
    """One row per decision (contacted, or held out of the journey): the customer's
    features as of ``decided_at``, ``treated`` and ``outcome`` (a purchase in
    [decided_at, decided_at + window)). Features are built once per decision moment from
    one encoding of the events (the same builder as training and serving)."""
    from features.customer_features import features_from_encoded
    from features.encode import encode_events

    decisions = decisions.reset_index(drop=True)
    enc = encode_events(events, customers)
    parts = []
    for moment, rows in decisions.groupby("decided_at", sort=True):
        table = features_from_encoded(enc, moment)
        known = rows[rows["customer_id"].isin(table.index)]
        parts.append(table.loc[known["customer_id"]].set_axis(known.index))
    features = pd.concat(parts).sort_index() if parts else pd.DataFrame()
    kept = decisions.loc[features.index]
    purchases = events.loc[events["event_type"] == "purchase", ["customer_id", "ts"]]
    outcome = _bought_within(kept, purchases, window)
    extra = pd.DataFrame(
        {
            "treated": (kept["status"] != "not_sent").to_numpy(),
            "outcome": outcome,
            "decided_at": kept["decided_at"].to_numpy(),
            "customer_id": kept["customer_id"].to_numpy(),
        },
        index=features.index,
    )
    return pd.concat([with_channel(features, kept["channel"]), extra], axis=1)


def with_channel(features: pd.DataFrame, channels) -> pd.DataFrame:
    """``features`` with one 0/1 column per outreach channel, ``contact_<channel>``: the
    channel the decision chose (a contact's effect depends on where it reaches the
    customer; the holdout's rows carry the channel they would have had)."""
    from features.contract.schema import OUTREACH_CHANNELS

    chosen = np.asarray(pd.Series(channels).astype(object).to_numpy())
    onehot = pd.DataFrame(
        {f"contact_{c}": (chosen == c).astype(np.float32) for c in OUTREACH_CHANNELS},
        index=features.index,
    )
    return pd.concat([features, onehot], axis=1)


def _bought_within(
    decisions: pd.DataFrame, purchases: pd.DataFrame, window: pd.Timedelta
) -> np.ndarray:
    """bool per decision: a purchase in [decided_at, decided_at + window)."""
    from features.labels import purchased_within

    moments = decisions[["customer_id", "decided_at"]].rename(columns={"decided_at": "at"})
    return purchased_within(moments, purchases, window)


def feature_columns(frame: pd.DataFrame) -> list[str]:
    """The model's inputs: every numeric or boolean feature column."""
    skip = {"treated", "outcome", "decided_at", "customer_id", *NOT_FEATURES}
    return [
        c
        for c in frame.columns
        if c not in skip and (pd.api.types.is_numeric_dtype(frame[c]) or frame[c].dtype == bool)
    ]


def time_split(moments: pd.Series, test_share: float) -> pd.Timestamp:
    """The first decision moment of the evaluation period: the latest ``test_share`` of
    distinct moments are kept for it (at least one, and at least one for training)."""
    distinct = np.sort(moments.unique())
    if len(distinct) < 2:
        raise ValueError(
            f"the journey's decisions span {len(distinct)} moment(s): an uplift model is "
            "trained on earlier decisions and measured on later ones (run the journey on "
            "more days first)"
        )
    n_test = min(len(distinct) - 1, max(1, round(test_share * len(distinct))))
    return pd.Timestamp(distinct[len(distinct) - n_test])


def measure(model: TwoModelUplift, test: pd.DataFrame) -> dict[str, float]:
    """Qini coefficient of the model's ranking and of a random one, and the uplift among
    the top k% against contacting everyone, on ``test``."""
    score = model.predict_uplift(test)
    treated, outcome = test["treated"].to_numpy(), test["outcome"].to_numpy()
    random_score = np.random.default_rng(0).random(len(test))
    metrics = {
        "qini": qini_curve(score, treated, outcome).coefficient,
        "qini_random": qini_curve(random_score, treated, outcome).coefficient,
        "uplift_everyone": uplift_at_k(score, treated, outcome, 1.0),
        "rows": float(len(test)),
        "contacted_share": float(treated.mean()),
    }
    for k in TOP_SHARES:
        metrics[f"uplift_top_{round(k * 100)}pct"] = uplift_at_k(score, treated, outcome, k)
    return metrics


def model_path(journeys_dir: Path, journey: str) -> Path:
    """Where a journey's uplift model is saved."""
    return Path(journeys_dir) / MODELS / f"{journey}.pkl"


def load_uplift(journeys_dir: Path, journey: str) -> TwoModelUplift | None:
    """The journey's saved uplift model, or None when none was trained."""
    path = model_path(journeys_dir, journey)
    if not path.exists():
        return None
    with path.open("rb") as f:
        return pickle.load(f)


def train_journey_uplift(
    settings: Settings,
    journey: str,
    window: pd.Timedelta,
    test_share: float = 0.25,
    track: bool = True,
    say: Callable[[str], None] = print,
) -> UpliftResult:
    """Fit ``journey``'s uplift model on its earlier decisions whose window has passed,
    measure it on the later ones, log both to MLflow (``track``) and save it."""
    from features.atomic import atomic_path
    from features.store.events import read_events, read_table
    from serving.journeys.decisions import read_decisions
    from serving.online import after_last_event

    decisions = read_decisions(settings.journeys_dir)
    decisions = decisions[
        (decisions["journey"] == journey)
        & ((decisions["status"] != "not_sent") | (decisions["reason"] == "holdout_journey"))
    ]
    end = after_last_event(settings)
    decisions = decisions[decisions["decided_at"] + window <= end]
    if decisions.empty:
        raise ValueError(
            f"no decisions of journey '{journey}' whose {window.days}-day window has passed "
            f"(contacted or in its holdout) in {settings.journeys_dir}"
        )
    split = time_split(decisions["decided_at"], test_share)
    say(f"{len(decisions):,} decisions of {journey}; evaluated from {split:%Y-%m-%d}")
    events = read_events(settings.store_dir, end=end)
    frame = examples(events, read_table(settings.store_dir, "customers"), decisions, window)
    columns = feature_columns(frame)
    train, test = frame[frame["decided_at"] < split], frame[frame["decided_at"] >= split]
    model = TwoModelUplift().fit(train[columns], train["treated"], train["outcome"])
    metrics = measure(model, test)
    result = UpliftResult(journey, model, split, len(train), len(test), metrics)
    result.path = model_path(settings.journeys_dir, journey)
    with atomic_path(result.path) as tmp, tmp.open("wb") as f:
        pickle.dump(model, f, protocol=pickle.HIGHEST_PROTOCOL)
    if track:
        result.run_id = _track(settings, result)
    return result


def _track(settings: Settings, result: UpliftResult) -> str:
    import mlflow

    from training.tracking import log_metrics, tracked_run

    params = {
        "journey": result.journey,
        "split": f"{result.split:%Y-%m-%d %H:%M}",
        "train_rows": result.train_rows,
        "test_rows": result.test_rows,
        **{f"lgbm_{k}": v for k, v in result.model.treated_model_.get_params().items()},
    }
    name = f"uplift {result.journey} test {result.split:%Y-%m-%d}"
    with tracked_run(settings, JOB, params=params, run_name=name) as run:
        log_metrics({k: v for k, v in result.metrics.items() if np.isfinite(v)}, "test_")
        mlflow.log_dict({"features": result.model.features_}, "features.json")
        mlflow.log_artifact(str(result.path), "model")
        return run.info.run_id
