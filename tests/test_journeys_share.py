"""issue 18: in real time a journey past the policy's share of all customers within a
day is refused (over_share), counting its contacts of the last day."""

from __future__ import annotations

import pandas as pd

from serving.journeys.decisions import SCHEMA, as_table
from serving.journeys.live import within_share
from serving.journeys.spec import ContactPolicy

NOW = pd.Timestamp("2026-03-10 12:00", tz="UTC")


def _decisions(journey: str, statuses: list[str], decided_at=NOW) -> pd.DataFrame:
    n = len(statuses)
    frame = SCHEMA.empty_table().to_pandas().reindex(range(n))
    return frame.assign(
        decision_id=[f"{journey}-{i}" for i in range(n)],
        run_id="r",
        decided_at=decided_at,
        customer_id=[f"c{i}" for i in range(n)],
        journey=journey,
        trigger_ts=decided_at,
        status=statuses,
        reason=["sent" if s == "sent" else "capped" for s in statuses],
        channel="email",
        send_at=[decided_at if s == "sent" else pd.NaT for s in statuses],
        products=[[] for _ in range(n)],
        priority=1,
    )


def test_a_journey_past_its_share_within_a_day_is_refused():
    policy = ContactPolicy(max_share_per_run=0.1)  # of 50 customers: 5 contacts a day
    history = pd.concat(
        [
            _decisions("cart", ["sent"] * 3, NOW - pd.Timedelta(hours=5)),
            _decisions("cart", ["sent"] * 9, NOW - pd.Timedelta(days=2)),  # not today
        ]
    )
    now = pd.concat(
        [
            _decisions("cart", ["sent", "sent", "sent", "not_sent"]),
            _decisions("winback", ["sent"] * 5),
        ],
        ignore_index=True,
    )
    out = within_share(now, history, policy, 50, NOW)
    cart = out[out["journey"] == "cart"]
    assert cart["reason"].tolist() == ["over_share"] * 3 + ["capped"]  # 3 + 3 > 5
    assert cart["status"].eq("not_sent").all() and cart["send_at"].isna().all()
    assert out.loc[out["journey"] == "winback", "reason"].eq("sent").all()  # 5 is not over
    as_table(out)  # still the log's schema
    two = now[now["journey"] == "cart"].iloc[:2]
    assert within_share(two, history, policy, 50, NOW)["reason"].eq("sent").all()  # 3 + 2
