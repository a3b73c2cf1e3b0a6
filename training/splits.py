"""Temporal splits: rolling training cutoffs, then a validation and a test cutoff.

Every label window is ``[cutoff, cutoff + horizon)``. Windows never overlap across the
three roles: training labels end before the validation cutoff, validation labels end
at the test cutoff, and the test window ends at or before ``as_of`` (default: the first
midnight after the last event). The test cutoff is never used for training, early
stopping or calibration.

The training cutoffs are chosen from the history there is: the requested number, a
given step apart, when they fit; else the same number closer together (down to a week
apart); else fewer, down to one. Only history shorter than one lookback plus one
horizon for each of train, validation and test is refused, and the message names that
minimum (issue 16).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

MIN_STEP_DAYS = 7  # closest two training cutoffs are placed before dropping one


@dataclass(frozen=True)
class TemporalSplit:
    """Cutoffs of one training run (UTC midnights) and how they were chosen."""

    train: tuple[pd.Timestamp, ...]
    valid: pd.Timestamp
    test: pd.Timestamp
    horizon_days: int
    as_of: pd.Timestamp | None = None
    note: str = ""  # what was changed from the request, and why ("" when nothing was)

    def as_params(self) -> dict[str, str]:
        """Flat strings for MLflow params / tags (the holdout definition)."""
        params = {
            "train_cutoffs": ",".join(f"{t:%Y-%m-%d}" for t in self.train),
            "valid_cutoff": f"{self.valid:%Y-%m-%d}",
            "test_cutoff": f"{self.test:%Y-%m-%d}",
            "horizon_days": str(self.horizon_days),
        }
        if self.as_of is not None:
            params["as_of"] = f"{self.as_of:%Y-%m-%d}"
        return params

    def describe(self) -> str:
        """One line for the CLI: the cutoffs and the test window."""
        end = self.test + pd.Timedelta(days=self.horizon_days - 1)
        train = ", ".join(f"{t:%Y-%m-%d}" for t in self.train)
        return (
            f"train cutoffs {train}; validation {self.valid:%Y-%m-%d}; test window "
            f"{self.test:%Y-%m-%d} .. {end:%Y-%m-%d} ({weeks_text(self.test, end)})"
        )


def weeks_text(first: pd.Timestamp, last: pd.Timestamp) -> str:
    """ISO weeks a window covers, e.g. "ISO weeks 2017-W44 .. 2017-W45"."""
    a, b = first.isocalendar(), last.isocalendar()
    start, stop = f"{a.year}-W{a.week:02d}", f"{b.year}-W{b.week:02d}"
    return f"ISO week {start}" if start == stop else f"ISO weeks {start} .. {stop}"


def day_after(ts: pd.Timestamp) -> pd.Timestamp:
    """The first midnight after ``ts``."""
    return pd.Timestamp(ts).floor("D") + pd.Timedelta(days=1)


def test_window(
    last_ts: pd.Timestamp,
    horizon_days: int,
    test_cutoff: pd.Timestamp | None = None,
    as_of: pd.Timestamp | None = None,
) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The test cutoff and ``as_of`` (the end of the data the job reads): ``as_of``
    defaults to the first midnight after ``last_ts``, the test cutoff to ``as_of`` -
    horizon. ValueError naming the option when the test window would leave the data."""
    day, horizon = pd.Timedelta(days=1), pd.Timedelta(days=horizon_days)
    data_end = day_after(last_ts)
    end = data_end if as_of is None else pd.Timestamp(as_of)
    if end > data_end:
        raise ValueError(
            f"--as-of {end:%Y-%m-%d} is after the data, which ends on {data_end - day:%Y-%m-%d}"
        )
    test = end - horizon if test_cutoff is None else pd.Timestamp(test_cutoff)
    if test + horizon > end:
        bound = "--as-of" if as_of is not None else "the data"
        raise ValueError(
            f"--test-cutoff {test:%Y-%m-%d}: its {horizon_days}-day test window runs to "
            f"{test + horizon - day:%Y-%m-%d}, past {bound} (last day {end - day:%Y-%m-%d}); "
            f"choose a test cutoff on or before {end - horizon:%Y-%m-%d}"
        )
    return test, end


def temporal_split(
    first_ts: pd.Timestamp,
    last_ts: pd.Timestamp,
    horizon_days: int,
    lookback_days: int,
    n_train: int = 4,
    step_days: int = 30,
    test_cutoff: pd.Timestamp | None = None,
    as_of: pd.Timestamp | None = None,
) -> TemporalSplit:
    """Place the cutoffs backwards from ``test_cutoff`` (default ``as_of`` - horizon;
    ``as_of`` defaults to the first midnight after ``last_ts``) so every label window is
    complete and lies in the data.

    Raises ValueError naming the parameter or the minimum history when they cannot be met.
    """
    if horizon_days <= 0 or lookback_days <= 0 or n_train <= 0 or step_days <= 0:
        raise ValueError("horizon_days, lookback_days, n_train and step_days must be positive")
    horizon = pd.Timedelta(days=horizon_days)
    first = pd.Timestamp(first_ts).floor("D")
    test, end = test_window(last_ts, horizon_days, test_cutoff, as_of)
    valid = test - horizon
    last_train = valid - horizon
    earliest = first + pd.Timedelta(days=lookback_days)
    if last_train < earliest:
        need = lookback_days + 3 * horizon_days
        have = (test + horizon - first).days
        raise ValueError(
            f"not enough history: need at least {need} days of events up to the end of the "
            f"test window (a {lookback_days}-day lookback, then a {horizon_days}-day horizon "
            f"for each of train, validation and test), have {have}; use a shorter --horizon "
            f"or --lookback, or more data"
        )
    train, note = _train_cutoffs(last_train, (last_train - earliest).days, n_train, step_days)
    return TemporalSplit(
        train=train, valid=valid, test=test, horizon_days=horizon_days, as_of=end, note=note
    )


def _train_cutoffs(
    last: pd.Timestamp, room_days: int, n: int, step: int
) -> tuple[tuple[pd.Timestamp, ...], str]:
    """``n`` cutoffs ``step`` days apart ending at ``last`` when ``room_days`` allows;
    else closer (not under a week), else fewer; with a note saying what was chosen."""
    note = ""
    if (n - 1) * step > room_days:
        asked = f"{n} training cutoffs {step} days apart need {(n - 1) * step} days"
        if room_days // (n - 1) >= MIN_STEP_DAYS:
            step = room_days // (n - 1)
            note = f"{asked}, the history leaves {room_days}: {n} cutoffs {step} days apart"
        else:
            old_n, step = n, MIN_STEP_DAYS
            n = room_days // step + 1
            spacing = f", {step} days apart" if n > 1 else ""
            note = f"{asked}, the history leaves {room_days}: {n} of {old_n}{spacing}"
    days = [last - pd.Timedelta(days=i * step) for i in range(n)]
    return tuple(days[::-1]), note
