"""What each journey added: contacted vs journey-holdout conversion and revenue within an
attribution window, the difference with a 95 % interval, incremental purchases and revenue
(docs/journeys.md, "Report").

Both groups are measured from ``decided_at`` (not ``send_at``): the holdout has no send
time, and a delay belongs to the treatment, so the windows start at the same moment.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from features.settings import Settings

Z = 1.959963984540054
"""The normal quantile of a two-sided 95 % interval."""
CONTACTED_STATUSES = ("sent", "delayed")
HOLDOUT_REASON = "holdout_journey"
COLUMNS = (
    "contacted",
    "holdout",
    "conversion_contacted",
    "conversion_holdout",
    "uplift",
    "ci_low",
    "ci_high",
    "revenue_per_customer_contacted",
    "revenue_per_customer_holdout",
    "revenue_uplift",
    "revenue_ci_low",
    "revenue_ci_high",
    "incremental_purchases",
    "incremental_revenue",
)


def attributed_outcomes(
    decisions: pd.DataFrame, purchases: pd.DataFrame, window: pd.Timedelta
) -> pd.DataFrame:
    """The contacted and holdout decisions with ``group`` ("contacted" / "holdout"),
    ``converted`` (a purchase in [decided_at, decided_at + window)) and ``revenue`` (the sum
    of those purchases' amounts); other decisions are dropped."""
    contacted = decisions["status"].isin(CONTACTED_STATUSES)
    held = decisions["reason"].eq(HOLDOUT_REASON)
    rows = decisions[contacted | held].reset_index(drop=True)
    rows = rows.assign(
        group=np.where(contacted[contacted | held].to_numpy(), "contacted", "holdout"),
        decided_at=pd.to_datetime(rows["decided_at"], utc=True),
    )
    pairs = rows[["customer_id", "decided_at"]].reset_index(names="row")
    buys = purchases[["customer_id", "ts", "amount"]].assign(
        ts=pd.to_datetime(purchases["ts"], utc=True), amount=purchases["amount"].fillna(0.0)
    )
    hits = pairs.merge(buys, on="customer_id", how="inner")
    hits = hits[(hits["ts"] >= hits["decided_at"]) & (hits["ts"] < hits["decided_at"] + window)]
    revenue = hits.groupby("row")["amount"].sum()
    return rows.assign(
        converted=rows.index.isin(revenue.index),
        revenue=revenue.reindex(rows.index, fill_value=0.0).to_numpy(dtype=float),
    )


def wilson(successes: np.ndarray, n: np.ndarray, z: float = Z) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of a proportion (NaN where n is 0)."""
    n = np.asarray(n, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.asarray(successes, dtype=float) / n
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


def newcombe(
    x1: np.ndarray, n1: np.ndarray, x2: np.ndarray, n2: np.ndarray, z: float = Z
) -> tuple[np.ndarray, np.ndarray]:
    """Newcombe's hybrid score interval (method 10) for p1 - p2: built from the two Wilson
    intervals, it keeps its coverage when a group is small or a rate is near 0 or 1, where
    the plain normal approximation does not."""
    with np.errstate(invalid="ignore", divide="ignore"):
        p1 = np.asarray(x1, dtype=float) / np.asarray(n1, dtype=float)
        p2 = np.asarray(x2, dtype=float) / np.asarray(n2, dtype=float)
    l1, u1 = wilson(x1, n1, z)
    l2, u2 = wilson(x2, n2, z)
    d = p1 - p2
    return d - np.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2), d + np.sqrt(
        (u1 - p1) ** 2 + (p2 - l2) ** 2
    )


def journey_report(
    decisions: pd.DataFrame,
    purchases: pd.DataFrame,
    window: pd.Timedelta,
    by: Sequence[str] = ("journey", "channel"),
) -> pd.DataFrame:
    """One row per ``by`` group: contacted vs holdout conversion and revenue per customer,
    the conversion uplift with Newcombe's 95 % interval, the revenue difference with a
    Welch (normal) 95 % interval, and incremental purchases / revenue (difference x
    contacted). ``purchases``: customer_id, ts, amount. A group with no holdout has NaN
    differences."""
    by = list(by)
    rows = attributed_outcomes(decisions, purchases, window)
    stats = (
        rows.groupby([*by, "group"], observed=True, dropna=False)
        .agg(
            n=("converted", "size"),
            x=("converted", "sum"),
            rev=("revenue", "mean"),
            var=("revenue", "var"),
        )
        .unstack("group")
    )
    if stats.empty:
        return pd.DataFrame(columns=[*by, *COLUMNS])

    def col(name: str, group: str) -> np.ndarray:
        if (name, group) in stats.columns:
            return stats[(name, group)].to_numpy(dtype=float)
        return np.full(len(stats), 0.0 if name in ("n", "x") else np.nan)

    n1, x1, r1, v1 = (col(k, "contacted") for k in ("n", "x", "rev", "var"))
    n2, x2, r2, v2 = (col(k, "holdout") for k in ("n", "x", "rev", "var"))
    n1, x1, n2, x2 = (np.nan_to_num(a) for a in (n1, x1, n2, x2))
    with np.errstate(invalid="ignore", divide="ignore"):
        c1, c2 = x1 / n1, x2 / n2
        half = Z * np.sqrt(np.nan_to_num(v1) / n1 + np.nan_to_num(v2) / n2)
    low, high = newcombe(x1, n1, x2, n2)
    out = pd.DataFrame(
        {
            "contacted": n1.astype(int),
            "holdout": n2.astype(int),
            "conversion_contacted": c1,
            "conversion_holdout": c2,
            "uplift": c1 - c2,
            "ci_low": low,
            "ci_high": high,
            "revenue_per_customer_contacted": r1,
            "revenue_per_customer_holdout": r2,
            "revenue_uplift": r1 - r2,
            "revenue_ci_low": r1 - r2 - half,
            "revenue_ci_high": r1 - r2 + half,
            "incremental_purchases": (c1 - c2) * n1,
            "incremental_revenue": (r1 - r2) * n1,
        },
        index=stats.index,
    )
    return out.reset_index()


def cumulative_uplift(
    decisions: pd.DataFrame, purchases: pd.DataFrame, window: pd.Timedelta, freq: str = "D"
) -> pd.DataFrame:
    """Per journey and period of ``decided_at`` (``freq``): the uplift and incremental
    purchases of all decisions up to the period's end (cumulative, so it settles as
    evidence accumulates). Columns: journey, period, contacted, holdout, uplift,
    incremental_purchases."""
    rows = attributed_outcomes(decisions, purchases, window)
    if rows.empty:
        return pd.DataFrame(
            columns=["journey", "period", "contacted", "holdout", "uplift", "incremental_purchases"]
        )
    rows = rows.assign(
        period=rows["decided_at"].dt.tz_convert("UTC").dt.tz_localize(None).dt.floor(freq),
        held=rows["group"].eq("holdout"),
    )
    rows = rows.assign(
        n1=~rows["held"],
        x1=rows["converted"] & ~rows["held"],
        n2=rows["held"],
        x2=rows["converted"] & rows["held"],
    )
    per = rows.groupby(["journey", "period"])[["n1", "x1", "n2", "x2"]].sum()
    cum = per.groupby(level="journey").cumsum()
    with np.errstate(invalid="ignore", divide="ignore"):
        uplift = cum["x1"] / cum["n1"] - cum["x2"] / cum["n2"]
    return pd.DataFrame(
        {
            "contacted": cum["n1"].astype(int),
            "holdout": cum["n2"].astype(int),
            "uplift": uplift,
            "incremental_purchases": uplift * cum["n1"],
        }
    ).reset_index()


def plot_cumulative(frame: pd.DataFrame, path: Path | str) -> Path:
    """A line per journey of cumulative incremental purchases over time, saved as ``path``
    (matplotlib's Agg backend: no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for journey, part in frame.groupby("journey"):
        ax.plot(part["period"], part["incremental_purchases"], label=str(journey))
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set_xlabel("decided on or before")
    ax.set_ylabel("cumulative incremental purchases")
    ax.set_title("Journeys: cumulative uplift vs holdout")
    if len(frame):
        ax.legend(loc="best")
    fig.autofmt_xdate()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def report_metrics(
    report: pd.DataFrame, by: Sequence[str] = ("journey", "channel")
) -> dict[str, float]:
    """The report as flat MLflow metrics, ``<journey>.<channel>.<column>`` (NaN left out)."""
    keys = report[list(by)].astype(str).agg(".".join, axis=1)
    long = report.set_index(keys)[list(COLUMNS)].stack()
    long = long[long.notna()]
    return {f"{k}.{c}": float(v) for (k, c), v in long.items()}


def log_report_to_mlflow(
    settings: Settings,
    report: pd.DataFrame,
    plot_path: Path | None,
    params: dict[str, Any] | None = None,
) -> str:
    """One run in the ``omni-journeys`` experiment with the report's numbers as metrics and
    the table (CSV) and plot as artifacts; returns the run id."""
    import tempfile

    import mlflow

    from training.tracking import tracked_run

    with tracked_run(settings, "journeys", params=params, run_name="journeys-report") as run:
        mlflow.log_metrics(report_metrics(report))
        with tempfile.TemporaryDirectory() as tmp:
            table = Path(tmp) / "journey_report.csv"
            report.to_csv(table, index=False)
            mlflow.log_artifact(str(table))
        if plot_path is not None:
            mlflow.log_artifact(str(plot_path))
        return run.info.run_id
