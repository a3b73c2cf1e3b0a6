"""The contact policy (issue 18): every reason on tiny frames with answers worked out by
hand, their precedence, priorities, caps in local calendar days, quiet hours across
midnight and DST, and a re-run that reads the previous run's decisions as history."""

from __future__ import annotations

import hashlib
from datetime import time

import numpy as np
import pandas as pd
import pytest

from serving.journeys.decisions import SCHEMA, as_table, read_decisions, write_decisions
from serving.journeys.policy import apply_policy
from serving.journeys.spec import Caps, ContactPolicy, QuietHours

AS_OF = pd.Timestamp("2026-03-10 12:00", tz="UTC")  # a Tuesday
NO_PURCHASES = pd.DataFrame({"customer_id": pd.Series([], dtype=str), "ts": pd.Series([])})
NO_HISTORY = SCHEMA.empty_table().to_pandas()


def _ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def _policy(**kw) -> ContactPolicy:
    """A policy with every rule off unless the test turns it on."""
    base = {
        "caps": Caps(),
        "quiet_hours": None,
        "global_holdout": 0.0,
        "suppress_after_purchase_hours": 0.0,
        "suppress_after_contact_hours": 0.0,
    }
    return ContactPolicy(**{**base, **kw})


def _proposals(*rows: dict) -> pd.DataFrame:
    base = {
        "customer_id": "c1",
        "journey": "cart",
        "trigger_ts": AS_OF - pd.Timedelta(hours=1),
        "trigger_products": [],
        "due_ts": AS_OF,
        "priority": 10,
        "channel": "email",
        "channel_probability": 0.6,
        "churn_probability": 0.3,
        "products": ["p1", "p2"],
        "uplift": None,
        "min_uplift": None,
        "journey_holdout": 0.0,
    }
    frame = pd.DataFrame([{**base, **row} for row in rows])
    return frame.astype({"uplift": float, "min_uplift": float, "journey_holdout": float})


def _history(*rows: dict) -> pd.DataFrame:
    """Earlier decisions: only the columns the policy reads, plus status."""
    base = {"customer_id": "c1", "journey": "old", "status": "sent", "channel": "email"}
    frame = pd.DataFrame([{"priority": 10, **base, **row} for row in rows])
    frame["send_at"] = pd.to_datetime(frame["send_at"], utc=True)
    return frame


def _decide(proposals, policy=None, history=NO_HISTORY, purchases=NO_PURCHASES, **kw):
    kw.setdefault("as_of", AS_OF)
    kw.setdefault("run_id", "run")
    return apply_policy(proposals, policy or _policy(), history, purchases, **kw)


def _share(customer: str, salt: str) -> float:
    """The holdout share, by hand."""
    digest = hashlib.blake2b(f"{salt}\x1f{customer}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def _ids(salt: str, below: float, n: int = 1, above: bool = False) -> list[str]:
    """``n`` customer ids whose share under ``salt`` is below (or at least) ``below``."""
    ids = (f"c{i}" for i in range(10_000))
    found = [c for c in ids if (_share(c, salt) >= below) == above]
    return found[:n]


# --------------------------------------------------------------------------- basics


def test_plain_send_has_the_log_columns():
    d = _decide(_proposals({}, {"customer_id": "c2", "due_ts": AS_OF + pd.Timedelta(hours=2)}))
    assert list(d.columns) == SCHEMA.names
    assert d["decision_id"].tolist() == ["run-0", "run-1"]
    assert (d["run_id"] == "run").all() and (d["decided_at"] == AS_OF).all()
    assert d["status"].tolist() == ["sent", "sent"]
    assert d["reason"].tolist() == ["sent", "sent"]
    assert d["send_at"].tolist() == [AS_OF, AS_OF + pd.Timedelta(hours=2)]
    assert list(d["products"][0]) == ["p1", "p2"]
    as_table(d)  # the log's schema accepts it


def test_an_overdue_proposal_is_sent_at_as_of():
    d = _decide(_proposals({"due_ts": AS_OF - pd.Timedelta(hours=5)}))
    assert d["send_at"].tolist() == [AS_OF]


def test_no_consent():
    d = _decide(_proposals({"channel": None}, {"customer_id": "c2"}))
    assert d["status"].tolist() == ["not_sent", "sent"]
    assert d["reason"].tolist() == ["no_consent", "sent"]
    assert pd.isna(d["send_at"][0])


def test_global_holdout_blocks_every_journey():
    inside = _ids("omni-journeys", 0.5)[0]
    outside = _ids("omni-journeys", 0.5, above=True)[0]
    props = _proposals(
        {"customer_id": inside},
        {"customer_id": inside, "journey": "win_back", "priority": 5},
        {"customer_id": outside},
    )
    d = _decide(props, _policy(global_holdout=0.5))
    assert d["reason"].tolist() == ["holdout_global", "holdout_global", "sent"]
    assert d["channel"].tolist() == ["email"] * 3  # where it would have gone


def test_journey_holdout_is_per_journey_and_drawn_among_those_who_would_be_sent():
    # in cart's holdout, not in win_back's. The holdout is drawn last, among the winners:
    # cart (higher priority) would have had them, so they hear from neither this run (a
    # held-out customer must be like a contacted one: not reached by another journey).
    both = [
        c
        for c in _ids("omni-journeys/cart", 0.5, n=50)
        if _share(c, "omni-journeys/win_back") >= 0.5
    ]
    customer = both[0]
    props = _proposals(
        {"customer_id": customer, "journey_holdout": 0.5, "priority": 50},
        {"customer_id": customer, "journey": "win_back", "journey_holdout": 0.5},
    )
    d = _decide(props)
    assert d["reason"].tolist() == ["holdout_journey", "lower_priority"]
    # when win_back leads, its holdout is not drawn for this customer: it is sent
    props.loc[1, "priority"] = 90
    assert _decide(props)["reason"].tolist() == ["lower_priority", "sent"]


def test_uplift_gate():
    props = _proposals(
        {"customer_id": "a", "min_uplift": 0.1, "uplift": 0.05},
        {"customer_id": "b", "min_uplift": 0.1, "uplift": None},
        {"customer_id": "c", "min_uplift": 0.1, "uplift": 0.1},
        {"customer_id": "d", "min_uplift": 0.1, "uplift": 0.2},
        {"customer_id": "e"},
    )
    d = _decide(props)
    assert d["reason"].tolist() == ["uplift_too_low"] * 3 + ["sent", "sent"]


def test_purchase_suppression_and_exemption():
    purchases = pd.DataFrame(
        {
            "customer_id": ["a", "b", "c", "d"],
            "ts": [
                AS_OF - pd.Timedelta(hours=23),  # inside the 24 hours
                AS_OF - pd.Timedelta(hours=25),  # too long ago
                AS_OF + pd.Timedelta(hours=1),  # after as_of: not seen yet
                AS_OF - pd.Timedelta(hours=1),
            ],
        }
    )
    props = _proposals(
        {"customer_id": "a"},
        {"customer_id": "b"},
        {"customer_id": "c"},
        {"customer_id": "d", "journey": "cross_sell"},
    )
    policy = _policy(suppress_after_purchase_hours=24, purchase_exempt=("cross_sell",))
    d = _decide(props, policy, purchases=purchases)
    assert d["reason"].tolist() == ["suppressed_purchase", "sent", "sent", "sent"]


def test_contact_suppression_by_a_higher_priority_journey():
    history = _history(
        {"customer_id": "a", "priority": 50, "send_at": AS_OF - pd.Timedelta(hours=47)},
        {"customer_id": "b", "priority": 50, "send_at": AS_OF - pd.Timedelta(hours=49)},
        {"customer_id": "c", "priority": 10, "send_at": AS_OF - pd.Timedelta(hours=1)},
        {"customer_id": "d", "priority": 50, "send_at": AS_OF - pd.Timedelta(hours=1)},
        # scheduled (delayed) for later: still on its way, so it suppresses too
        {
            "customer_id": "e",
            "priority": 50,
            "status": "delayed",
            "send_at": AS_OF + pd.Timedelta(hours=5),
        },
        # not sent: no contact
        {"customer_id": "f", "priority": 50, "status": "not_sent", "send_at": None},
    )
    props = _proposals(
        {"customer_id": "a"},
        {"customer_id": "b"},
        {"customer_id": "c"},  # same priority: not suppressed
        {"customer_id": "d", "priority": 60},  # higher priority: not suppressed
        {"customer_id": "e"},
        {"customer_id": "f"},
    )
    d = _decide(props, _policy(suppress_after_contact_hours=48), history)
    assert d["reason"].tolist() == [
        "suppressed_contact",
        "sent",
        "sent",
        "sent",
        "suppressed_contact",
        "sent",
    ]


def test_precedence_of_reasons():
    customer = _ids("omni-journeys", 0.5)[0]
    purchases = pd.DataFrame({"customer_id": [customer], "ts": [AS_OF - pd.Timedelta(hours=1)]})
    everything = {"customer_id": customer, "min_uplift": 0.5, "uplift": 0.0}
    props = _proposals({**everything, "channel": None}, everything)
    policy = _policy(global_holdout=0.5, suppress_after_purchase_hours=24)
    d = _decide(props, policy, purchases=purchases)
    assert d["reason"].tolist() == ["no_consent", "holdout_global"]
    # without the holdout: the uplift gate comes before the purchase
    d = _decide(props, _policy(suppress_after_purchase_hours=24), purchases=purchases)
    assert d["reason"].tolist() == ["no_consent", "uplift_too_low"]
    d = _decide(
        _proposals({"customer_id": customer}, {"customer_id": customer, "journey": "b"}),
        _policy(suppress_after_purchase_hours=24),
        purchases=purchases,
    )
    assert d["reason"].tolist() == ["suppressed_purchase", "suppressed_purchase"]


def test_a_capped_or_suppressed_customer_is_never_counted_in_the_journeys_holdout():
    # in the journey's holdout (share < 0.5), but capped by yesterday's message: "capped"
    customer = _ids("omni-journeys/cart", 0.5)[0]
    history = _history({"customer_id": customer, "send_at": "2026-03-09 23:00"})
    as_of = _ts("2026-03-10 12:00")
    held = {"customer_id": customer, "journey_holdout": 0.5, "due_ts": as_of}
    d = _decide(_proposals(held), _policy(caps=Caps(per_week=1)), history, as_of=as_of)
    assert d["reason"].tolist() == ["capped"]
    d = _decide(_proposals(held), _policy(caps=Caps(per_week=2)), history, as_of=as_of)
    assert d["reason"].tolist() == ["holdout_journey"]
    assert pd.isna(d["send_at"][0]) and d["status"][0] == "not_sent"


# --------------------------------------------------------------------------- priority


def test_highest_priority_wins_then_name_then_due():
    later = AS_OF + pd.Timedelta(hours=2)
    props = _proposals(
        {"customer_id": "a", "journey": "cart", "priority": 10},
        {"customer_id": "a", "journey": "win_back", "priority": 20},
        {"customer_id": "b", "journey": "zeta", "priority": 10},
        {"customer_id": "b", "journey": "alpha", "priority": 10},
        {"customer_id": "c", "journey": "same", "due_ts": later},
        {"customer_id": "c", "journey": "same"},
        {"customer_id": "d"},
    )
    d = _decide(props)
    assert d["reason"].tolist() == [
        "lower_priority",
        "sent",
        "lower_priority",
        "sent",
        "lower_priority",
        "sent",
        "sent",
    ]


def test_only_proposals_that_passed_earlier_checks_compete():
    props = _proposals(
        {"priority": 90, "channel": None},
        {"priority": 80, "min_uplift": 1.0, "journey": "b"},
        {"priority": 10, "journey": "c"},
    )
    d = _decide(props)
    assert d["reason"].tolist() == ["no_consent", "uplift_too_low", "sent"]


# --------------------------------------------------------------------------- caps


def test_day_cap_counts_the_customers_local_day():
    # 23:00 UTC on the 9th and 02:00 UTC on the 10th: two days in UTC, one day (the 9th,
    # 19:00 and 22:00 EDT) in New York
    as_of = _ts("2026-03-10 02:00")
    history = _history(
        {"customer_id": "ny", "send_at": "2026-03-09 23:00"},
        {"customer_id": "utc", "send_at": "2026-03-09 23:00"},
        {"customer_id": "shop", "send_at": "2026-03-09 23:00"},
    )
    props = _proposals(*({"customer_id": c, "due_ts": as_of} for c in ("ny", "utc", "shop")))
    zones = pd.Series({"ny": "America/New_York", "utc": "UTC"})
    policy = _policy(caps=Caps(per_day=1), timezone="America/New_York")
    d = _decide(props, policy, history, as_of=as_of, customer_zones=zones)
    # "utc" has its own zone; "shop" has none and takes the shop's (New York)
    assert d["reason"].tolist() == ["capped", "sent", "capped"]
    assert pd.isna(d["send_at"][0]) and d["channel"][0] == "email"
    d = _decide(props, _policy(caps=Caps(per_day=2)), history, as_of=as_of, customer_zones=zones)
    assert d["reason"].tolist() == ["sent"] * 3


def test_channel_caps_count_their_channel_only():
    history = _history(
        {"customer_id": "a", "channel": "sms", "send_at": AS_OF - pd.Timedelta(hours=2)},
        {"customer_id": "b", "channel": "sms", "send_at": AS_OF - pd.Timedelta(hours=2)},
        {"customer_id": "c", "channel": "email", "send_at": AS_OF - pd.Timedelta(hours=2)},
    )
    props = _proposals(
        {"customer_id": "a", "channel": "sms"},
        {"customer_id": "b", "channel": "email"},
        {"customer_id": "c", "channel": "sms"},
    )
    d = _decide(props, _policy(channel_caps={"sms": Caps(per_day=1)}), history)
    assert d["reason"].tolist() == ["capped", "sent", "sent"]


def test_week_cap_is_the_seven_days_ending_with_the_send_day():
    def days_ago(customer: str, *days: int) -> list[dict]:
        return [{"customer_id": customer, "send_at": AS_OF - pd.Timedelta(days=k)} for k in days]

    history = _history(
        *days_ago("a", 6, 5, 4),  # all three inside: a fourth is one too many
        *days_ago("b", 7, 5, 4),  # 7 days ago is outside the window
        *days_ago("c", 2, 1),
    )
    props = _proposals({"customer_id": "a"}, {"customer_id": "b"}, {"customer_id": "c"})
    d = _decide(props, _policy(caps=Caps(per_week=3)), history)
    assert d["reason"].tolist() == ["capped", "sent", "sent"]


def test_zero_cap_caps_everything():
    d = _decide(_proposals({}), _policy(caps=Caps(per_day=0)))
    assert d["reason"].tolist() == ["capped"]


def test_rerun_with_the_decisions_as_history_caps(tmp_path):
    policy = _policy(caps=Caps(per_day=1))
    first = _decide(_proposals({"customer_id": "a"}, {"customer_id": "b", "channel": None}))
    assert first["reason"].tolist() == ["sent", "no_consent"]
    write_decisions(tmp_path, first, "run")
    history = read_decisions(tmp_path)
    props = _proposals(
        {"customer_id": "a", "journey": "win_back", "due_ts": AS_OF + pd.Timedelta(hours=1)},
        {"customer_id": "b", "journey": "win_back"},
    )
    later = AS_OF + pd.Timedelta(hours=1)
    second = _decide(props, policy, history, as_of=later, run_id="run2")
    assert second["reason"].tolist() == ["capped", "sent"]
    assert second["decision_id"].tolist() == ["run2-0", "run2-1"]


# --------------------------------------------------------------------------- quiet hours

NIGHT = QuietHours(start=time(21), end=time(8))


@pytest.mark.parametrize(
    ("due", "status", "send_at"),
    [
        ("2026-03-10 22:30", "delayed", "2026-03-11 08:00"),  # after start: next day's end
        ("2026-03-10 03:00", "delayed", "2026-03-10 08:00"),  # after midnight: today's end
        ("2026-03-10 21:00", "delayed", "2026-03-11 08:00"),  # start is quiet
        ("2026-03-10 08:00", "sent", "2026-03-10 08:00"),  # end is not
        ("2026-03-10 20:59", "sent", "2026-03-10 20:59"),
    ],
)
def test_quiet_hours_wrapping_midnight(due, status, send_at):
    as_of = _ts("2026-03-10 00:00")
    d = _decide(_proposals({"due_ts": _ts(due)}), _policy(quiet_hours=NIGHT), as_of=as_of)
    assert d["status"].tolist() == [status]
    assert d["reason"].tolist() == ["quiet_hours" if status == "delayed" else "sent"]
    assert d["send_at"].tolist() == [_ts(send_at)]


def test_quiet_hours_within_a_day():
    lunch = QuietHours(start=time(12), end=time(14))
    d = _decide(_proposals({"due_ts": _ts("2026-03-10 13:00")}), _policy(quiet_hours=lunch))
    assert d["send_at"].tolist() == [_ts("2026-03-10 14:00")]
    assert d["status"].tolist() == ["delayed"]


def test_quiet_hours_end_in_local_time_across_dst():
    zones = pd.Series({"berlin": "Europe/Berlin", "ny": "America/New_York"})
    policy = _policy(quiet_hours=NIGHT)
    # Berlin, 22:30 CET (UTC+1) on 28 March 2026; clocks go forward that night, so 08:00
    # the next morning is CEST (UTC+2): 06:00 UTC, not 07:00
    as_of = _ts("2026-03-28 21:30")
    d = _decide(_proposals({"customer_id": "berlin"}), policy, as_of=as_of, customer_zones=zones)
    assert d["send_at"].tolist() == [_ts("2026-03-29 06:00")]
    # New York, 23:00 EDT (UTC-4) on 31 October 2026; clocks go back that night, so 08:00
    # the next morning is EST (UTC-5): 13:00 UTC
    as_of = _ts("2026-11-01 03:00")
    d = _decide(_proposals({"customer_id": "ny"}), policy, as_of=as_of, customer_zones=zones)
    assert d["send_at"].tolist() == [_ts("2026-11-01 13:00")]
    assert d["status"].tolist() == ["delayed"]


def test_caps_count_the_final_send_day():
    # due at 22:00 on the 10th, moved to 08:00 on the 11th: the 10th's message does not
    # count, the one already scheduled for the 11th does
    as_of = _ts("2026-03-10 22:00")
    policy = _policy(quiet_hours=NIGHT, caps=Caps(per_day=1))
    today = _history({"customer_id": "a", "send_at": "2026-03-10 10:00"})
    d = _decide(_proposals({"customer_id": "a"}), policy, today, as_of=as_of)
    assert d["reason"].tolist() == ["quiet_hours"]
    tomorrow = _history({"customer_id": "a", "status": "delayed", "send_at": "2026-03-11 08:00"})
    d = _decide(_proposals({"customer_id": "a"}), policy, tomorrow, as_of=as_of)
    assert d["reason"].tolist() == ["capped"]


# --------------------------------------------------------------------------- invariants


def test_random_run_keeps_the_rules():
    props, _, zones = _random_run(3000, seed=7)
    policy = _policy(quiet_hours=NIGHT, global_holdout=0.05, caps=Caps(per_day=1))
    d = _decide(props, policy, customer_zones=zones)
    sent = d[d["status"] != "not_sent"]
    assert sent["customer_id"].is_unique
    assert set(d["reason"]) <= {
        "sent",
        "quiet_hours",
        "no_consent",
        "holdout_global",
        "holdout_journey",
        "lower_priority",
    }
    in_ny = sent["customer_id"].isin(zones.index)
    ny_hour = sent["send_at"].dt.tz_convert("America/New_York").dt.hour
    hours = ny_hour.where(in_ny, sent["send_at"].dt.hour)  # every send outside quiet hours
    assert in_ny.any() and ((hours >= 8) & (hours < 21)).all()
    assert d["send_at"].isna().eq(d["status"] == "not_sent").all()


def test_no_proposals_no_decisions():
    d = _decide(_proposals({}).iloc[:0], _policy(caps=Caps(per_day=1), quiet_hours=NIGHT))
    assert list(d.columns) == SCHEMA.names and d.empty
    as_table(d)


def test_unknown_time_zone_is_named():
    zones = pd.Series({"c1": "Mars/Olympus"})
    with pytest.raises(ValueError, match="Mars/Olympus"):
        _decide(_proposals({}), customer_zones=zones)


def _random_run(n: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series]:
    """Proposals, history and zones of a random run over a few hundred customers."""
    rng = np.random.default_rng(seed)
    customers = [f"c{i}" for i in range(n // 4)]
    props = _proposals(
        *(
            {
                "customer_id": str(rng.choice(customers)),
                "journey": str(rng.choice(["cart", "win_back", "cross_sell"])),
                "priority": int(rng.integers(3)),
                "channel": rng.choice(["email", "sms", None]),
                "due_ts": AS_OF + pd.Timedelta(minutes=int(rng.integers(0, 24 * 60))),
                "journey_holdout": 0.2,
            }
            for _ in range(n)
        )
    ).drop_duplicates(["customer_id", "journey"], ignore_index=True)
    history = _history(
        *(
            {
                "customer_id": str(rng.choice(customers)),
                "channel": str(rng.choice(["email", "sms"])),
                "priority": int(rng.integers(3)),
                "send_at": AS_OF - pd.Timedelta(minutes=int(rng.integers(0, 9 * 24 * 60))),
            }
            for _ in range(n)
        )
    )
    zones = pd.Series({c: "America/New_York" for c in customers[::2]})
    return props, history, zones


def test_batch_equals_one_customer_at_a_time():
    props, history, zones = _random_run(400, seed=3)
    policy = _policy(
        quiet_hours=NIGHT,
        global_holdout=0.1,
        caps=Caps(per_day=1, per_week=2),
        channel_caps={"sms": Caps(per_week=1)},
        suppress_after_contact_hours=24,
    )
    batch = _decide(props, policy, history, customer_zones=zones)
    assert batch["reason"].nunique() >= 6
    for customer, rows in props.groupby("customer_id"):
        alone = _decide(rows, policy, history, customer_zones=zones)
        mine = batch[batch["customer_id"] == customer]
        assert alone["reason"].tolist() == mine["reason"].tolist(), customer
        assert alone["send_at"].tolist() == mine["send_at"].tolist(), customer


def test_holdouts_are_those_of_holdout_py():
    from serving.journeys.holdout import in_global_holdout, in_journey_holdout
    from serving.journeys.spec import Journey

    ids = [f"c{i}" for i in range(300)]
    props = _proposals(*({"customer_id": c, "journey_holdout": 0.3} for c in ids))
    policy = _policy(global_holdout=0.2)
    d = _decide(props, policy)
    cart = Journey(name="cart", trigger={"kind": "cart_abandoned"}, holdout=0.3)
    glob = in_global_holdout(ids, policy)
    assert ((d["reason"] == "holdout_global") == glob).all()
    assert (
        (d["reason"] == "holdout_journey") == (in_journey_holdout(ids, policy, cart) & ~glob)
    ).all()
