"""Temporal splits: several rolling training cutoffs, then a validation and a test cutoff.

Every label window is ``[cutoff, cutoff + horizon)``. Windows never overlap across the
three roles: training labels end before the validation cutoff, validation labels end
at the test cutoff, and the test window ends at the last day of data. The test cutoff
is never used for training, early stopping or calibration.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class TemporalSplit:
    """Cutoffs of one training run (UTC midnights)."""

    train: tuple[pd.Timestamp, ...]
    valid: pd.Timestamp
    test: pd.Timestamp
    horizon_days: int

    def as_params(self) -> dict[str, str]:
        """Flat strings for MLflow params / tags (the holdout definition)."""
        return {
            "train_cutoffs": ",".join(f"{t:%Y-%m-%d}" for t in self.train),
            "valid_cutoff": f"{self.valid:%Y-%m-%d}",
            "test_cutoff": f"{self.test:%Y-%m-%d}",
            "horizon_days": str(self.horizon_days),
        }


def temporal_split(
    first_ts: pd.Timestamp,
    last_ts: pd.Timestamp,
    horizon_days: int,
    lookback_days: int,
    n_train: int = 4,
    step_days: int = 30,
) -> TemporalSplit:
    """Place cutoffs backwards from the end of the data so every label window is complete.

    Raises ValueError naming what is missing when the data is too short.
    """
    if horizon_days <= 0 or lookback_days <= 0 or n_train <= 0 or step_days <= 0:
        raise ValueError("horizon_days, lookback_days, n_train and step_days must be positive")
    day = pd.Timedelta(days=1)
    end = pd.Timestamp(last_ts).floor("D") + day  # first midnight after the last event
    horizon = pd.Timedelta(days=horizon_days)
    test = end - horizon
    valid = test - horizon
    last_train = valid - horizon
    train = tuple(last_train - i * pd.Timedelta(days=step_days) for i in range(n_train))[::-1]
    earliest = pd.Timestamp(first_ts).floor("D") + pd.Timedelta(days=lookback_days)
    if train[0] < earliest:
        need = (end - train[0]).days + lookback_days
        have = (end - pd.Timestamp(first_ts).floor("D")).days
        raise ValueError(
            f"not enough history for {n_train} training cutoffs {step_days} days apart with a "
            f"{horizon_days}-day horizon and {lookback_days}-day lookback: need {need} days of "
            f"events, have {have} (use fewer cutoffs, a shorter horizon or more data)"
        )
    return TemporalSplit(train=train, valid=valid, test=test, horizon_days=horizon_days)
