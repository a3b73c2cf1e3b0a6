"""Benchmark: `apply_policy` deciding one run of journey proposals (issue 18), with a week
of contact history, a day of purchases, three time zones, quiet hours, global and
channel caps and holdouts. Prints the median seconds of ``--repeat`` runs in-process.

    python tests/benchmarks/bench_journeys_policy.py --customers 1000000 --repeat 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from serving.journeys.policy import apply_policy
from serving.journeys.spec import Caps, ContactPolicy

JOURNEYS = ("cart", "win_back", "cross_sell", "lapsed_store")
CHANNELS = np.array(["email", "sms", "push", "direct_mail", None], dtype=object)
ZONES = ("Europe/London", "America/New_York", "Europe/Berlin")


def make_inputs(customers: int, seed: int) -> dict:
    """Proposals (1.2 per customer), history, purchases and zones of one run."""
    rng = np.random.default_rng(seed)
    as_of = pd.Timestamp("2026-03-10 19:30", tz="UTC")
    ids = np.array([f"c{i}" for i in range(customers)], dtype=object)
    # one proposal per customer, one customer in five with a second journey as well
    first = rng.integers(len(JOURNEYS), size=customers)
    second = rng.choice(customers, size=customers // 5, replace=False)
    who = np.concatenate([np.arange(customers), second])
    journey = np.concatenate([first, (first[second] + rng.integers(1, 4, second.size)) % 4])
    n = who.size
    props = pd.DataFrame(
        {
            "customer_id": ids[who],
            "journey": np.array(JOURNEYS, dtype=object)[journey],
            "trigger_ts": as_of - pd.to_timedelta(rng.integers(0, 48 * 3600, size=n), "s"),
            "due_ts": as_of + pd.to_timedelta(rng.integers(0, 6 * 3600, size=n), "s"),
            "priority": (journey * 10).astype(np.int32),
            "channel": CHANNELS[rng.choice(5, size=n, p=[0.4, 0.2, 0.2, 0.1, 0.1])],
            "channel_probability": rng.random(n),
            "churn_probability": rng.random(n),
            "products": pd.Series([["p1", "p2", "p3"]] * n, dtype=object),
            "uplift": np.where(journey == 1, rng.normal(0.02, 0.02, n), np.nan),
            "min_uplift": np.where(journey == 1, 0.0, np.nan),
            "journey_holdout": 0.1,
        }
    )
    k = 2 * customers
    history = pd.DataFrame(
        {
            "customer_id": ids[rng.integers(customers, size=k)],
            "journey": np.array(JOURNEYS, dtype=object)[rng.integers(len(JOURNEYS), size=k)],
            "status": np.array(["sent", "delayed", "not_sent"], dtype=object)[
                rng.integers(3, size=k)
            ],
            "channel": CHANNELS[rng.integers(4, size=k)],
            "send_at": as_of - pd.to_timedelta(rng.integers(0, 10 * 86400, size=k), "s"),
            "priority": rng.integers(0, 40, size=k).astype(np.int32),
        }
    )
    m = customers // 5
    purchases = pd.DataFrame(
        {
            "customer_id": ids[rng.integers(customers, size=m)],
            "ts": as_of - pd.to_timedelta(rng.integers(0, 86400, size=m), "s"),
        }
    )
    zones = pd.Series(np.array(ZONES, dtype=object)[rng.integers(3, size=customers)], index=ids)
    return {
        "proposals": props,
        "history": history,
        "purchases": purchases,
        "as_of": as_of,
        "customer_zones": zones,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    inputs = make_inputs(args.customers, args.seed)
    policy = ContactPolicy(
        timezone="Europe/London",
        caps=Caps(per_day=1, per_week=3),
        channel_caps={"sms": Caps(per_week=1)},
        purchase_exempt=("cross_sell",),
    )
    seconds = []
    for i in range(args.repeat):
        t0 = time.perf_counter()
        decisions = apply_policy(policy=policy, run_id=f"bench-{i}", **inputs)
        seconds.append(time.perf_counter() - t0)
    counts = decisions["reason"].value_counts().to_dict()
    print(f"proposals: {len(inputs['proposals']):,}  history: {len(inputs['history']):,}")
    print(f"reasons: {counts}")
    print(f"runs: {[round(s, 3) for s in seconds]}")
    print(f"median seconds: {statistics.median(seconds):.3f}")


if __name__ == "__main__":
    main()
