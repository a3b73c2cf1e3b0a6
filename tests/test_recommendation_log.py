"""The recommendation log (what /recommend served) and the attribution of events to it
(issue 19: recommendation_id, a bounded Parquet log, `omni report recs`)."""

from __future__ import annotations

import pandas as pd
import pytest
from cli_helpers import omni

from serving.rec_attribution import attributed, recs_report
from serving.recommendation_log import Answer, RecommendationLog, log_files, prune, read_log

T0 = pd.Timestamp("2026-12-01 10:00", tz="UTC")


def _answer(rec_id: str, minutes: float, customer: str, channel, cold: bool, items) -> Answer:
    served = (T0 + pd.Timedelta(minutes=minutes)).timestamp()
    ids = [p for p, _ in items]
    reasons = [r for _, r in items]
    scores = [1.0 / (i + 1) for i in range(len(items))]
    return Answer(rec_id, served, customer, channel, None, cold, "5", ids, reasons, scores)


def test_log_ids_are_distinct_within_and_across_workers(tmp_path):
    a, b = RecommendationLog(tmp_path, 2**20), RecommendationLog(tmp_path, 2**20)
    ids = [a.new_id() for _ in range(1000)] + [b.new_id() for _ in range(1000)]
    assert len(set(ids)) == 2000


def test_written_log_has_one_row_per_item_in_rank_order(tmp_path):
    log = RecommendationLog(tmp_path / "recs", 2**20)
    assert log.write() is None  # nothing served: no file
    log.add(_answer("r1", 0, "c1", "web", False, [("p1", "buy again"), ("p2", "popular")]))
    log.add(_answer("r2", 1, "c2", None, True, [("p3", "popular")]))
    log.add(_answer("r3", 2, "c3", "app", False, []))  # an answer with no items shows nothing
    path = log.write()
    assert path is not None and path.parent == tmp_path / "recs"
    assert [p.name for p in (tmp_path / "recs").iterdir()] == [path.name]  # no temp file left
    rows = read_log(tmp_path / "recs").to_pandas()
    assert rows["recommendation_id"].tolist() == ["r1", "r1", "r2"]
    assert rows["product_id"].tolist() == ["p1", "p2", "p3"]
    assert rows["rank"].tolist() == [1, 2, 1]
    assert rows["reason"].tolist() == ["buy again", "popular", "popular"]
    assert rows["cold_start"].tolist() == [False, False, True]
    assert rows["channel"].fillna("-").tolist() == ["web", "web", "-"]
    assert rows["served_at"].tolist() == [T0, T0, T0 + pd.Timedelta(minutes=1)]
    assert rows["score"].tolist() == [1.0, 0.5, 1.0]
    assert log.write() is None  # written once


def test_read_log_from_a_time_on(tmp_path):
    log = RecommendationLog(tmp_path, 2**20)
    log.add(_answer("early", 0, "c1", "web", False, [("p1", "popular")]))
    log.write()
    log.add(_answer("late", 90, "c1", "web", False, [("p1", "popular")]))
    log.write()
    since = (T0 + pd.Timedelta(hours=1)).to_pydatetime()
    assert read_log(tmp_path, since).column("recommendation_id").to_pylist() == ["late"]
    assert read_log(tmp_path / "none").num_rows == 0


def test_log_stays_under_its_bound_dropping_the_oldest_files(tmp_path):
    log = RecommendationLog(tmp_path, max_bytes=1)  # every write leaves only the newest
    for i in range(3):
        log.add(_answer(f"r{i}", i, "c1", "web", False, [("p1", "popular")]))
        newest = log.write()
    assert log_files(tmp_path) == [newest]
    for i in range(3):  # a large bound keeps them all
        (tmp_path / f"recs-2026110{i}T000000-1-x-1.parquet").write_bytes(b"x" * 100)
    assert prune(tmp_path, max_bytes=10**6) == 0
    assert len(log_files(tmp_path)) == 4
    real = newest.stat().st_size
    assert prune(tmp_path, max_bytes=real + 100) == 2  # the two oldest go
    assert log_files(tmp_path) == [tmp_path / "recs-20261102T000000-1-x-1.parquet", newest]


def _events(*rows) -> pd.DataFrame:
    columns = ["recommendation_id", "product_id", "ts", "event_type", "amount"]
    frame = pd.DataFrame(list(rows), columns=columns)
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    return frame


def _shown(tmp_path) -> pd.DataFrame:
    log = RecommendationLog(tmp_path, 2**20)
    log.add(_answer("r1", 0, "c1", "web", False, [("p1", "buy again"), ("p2", "popular")]))
    log.add(_answer("r2", 0, "c2", "web", True, [("p1", "popular"), ("p3", "popular")]))
    log.add(_answer("r3", 0, "c3", "store", False, [("p4", "buy again")]))
    log.write()
    return read_log(tmp_path).to_pandas()


def test_events_are_attributed_to_the_product_shown_once_per_kind(tmp_path):
    shown = _shown(tmp_path)
    t = T0 + pd.Timedelta(minutes=3)
    events = _events(
        ("r1", "p1", t, "click", None),
        ("r1", "p1", t, "view", None),  # a second click-through of the same item: once
        ("r1", "p1", t + pd.Timedelta(hours=1), "purchase", 12.5),
        ("r2", "p3", t, "add_to_cart", None),
        ("r2", "p2", t, "click", None),  # p2 was not in r2: unmatched
        ("r9", "p1", t, "click", None),  # no such answer: unmatched
        ("r3", "p4", t + pd.Timedelta(days=8), "purchase", 3.0),  # after the window
        ("r3", "p4", T0 - pd.Timedelta(hours=1), "click", None),  # before the answer
        (None, "p4", t, "purchase", 3.0),  # no recommendation_id: not in the report at all
    )
    rows, unmatched = attributed(shown, events, pd.Timedelta(days=7))
    assert unmatched == 4
    got = rows.set_index(["recommendation_id", "product_id"])
    assert got.loc[("r1", "p1"), ["clicked", "carted", "bought"]].tolist() == [1, 0, 1]
    assert got.loc[("r1", "p1"), "revenue"] == 12.5
    assert got.loc[("r2", "p3"), ["clicked", "carted", "bought"]].tolist() == [0, 1, 0]
    assert not got.loc[[("r1", "p2"), ("r2", "p1"), ("r3", "p4")], "clicked"].any()
    assert len(rows) == len(shown)


def test_report_rates_per_reason_channel_and_customer(tmp_path):
    shown = _shown(tmp_path)
    t = T0 + pd.Timedelta(minutes=3)
    events = _events(
        ("r1", "p1", t, "click", None),
        ("r1", "p1", t, "purchase", 10.0),
        ("r2", "p1", t, "click", None),
    )
    rows, _ = attributed(shown, events, pd.Timedelta(days=7))
    table = recs_report(rows).set_index(["reason", "channel", "customer"])
    assert table.loc[
        ("buy again", "web", "warm"), ["impressions", "clicks", "purchases"]
    ].tolist() == [1, 1, 1]
    assert table.loc[("popular", "web", "cold"), ["impressions", "clicks", "ctr"]].tolist() == [
        2,
        1,
        0.5,
    ]
    assert table.loc[
        ("all", "all", "all"), ["impressions", "clicks", "purchases", "revenue"]
    ].tolist() == [5, 2, 1, 10.0]
    assert table.loc[("all", "all", "all"), "conversion"] == pytest.approx(0.2)
    by_reason = recs_report(rows, ["reason"]).set_index("reason")
    assert by_reason["impressions"].to_dict() == {"popular": 3, "buy again": 2, "all": 5}
    with pytest.raises(ValueError, match="cannot split by store"):
        recs_report(rows, ["store"])


def _home_with_log_and_events(tmp_path):
    """A home whose recommendation log holds :func:`_shown`'s answers and whose store
    holds a click and a purchase carrying their recommendation_id (loaded from a file)."""
    home = tmp_path / "home"
    _shown(home / "recommendations")
    src = tmp_path / "src"
    src.mkdir()
    t = (T0 + pd.Timedelta(minutes=3)).isoformat()
    (src / "events.csv").write_text(
        "customer_id,ts,channel,event_type,product_id,amount,recommendation_id\n"
        f"c1,{t},web,click,p1,,r1\n"
        f"c1,{t},web,purchase,p1,10.0,r1\n"
        f"c2,{t},web,view,p1,,r2\n"
        f"c2,{t},web,view,p9,,r2\n"
    )
    res = omni("data", "load", str(src), home=home)
    assert res.returncode == 0, res.stderr
    return home


def test_omni_report_recs_over_the_store_and_the_log(tmp_path):
    import json

    home = _home_with_log_and_events(tmp_path)
    res = omni("report", "recs", "--since", "2026-12-01", "--json", home=home)
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert (report["answers"], report["unmatched_events"]) == (3, 1)
    rows = {(r["reason"], r["channel"], r["customer"]): r for r in report["rows"]}
    assert rows[("all", "all", "all")]["impressions"] == 5
    assert rows[("buy again", "web", "warm")]["conversion"] == 1.0
    assert rows[("popular", "web", "cold")]["ctr"] == 0.5
    res = omni("report", "recs", "--since", "2026-12-01", "--by", "channel", home=home)
    assert res.returncode == 0, res.stderr
    assert "store" in res.stdout and "40.00%" in res.stdout  # all: 2 clicks of 5 shown
    assert "1 events carry a recommendation_id that matches no product shown" in res.stdout


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--since", "yesterday-ish"], 2, "--since"),
        (["--since", "2026-12-01", "--by", "store"], 2, "cannot split by store"),
        (["--since", "2026-12-02", "--until", "2026-12-01"], 2, "must be after --since"),
        (["--since", "2027-01-01"], 1, "no recommendations logged since 2027-01-01"),
    ],
)
def test_omni_report_recs_refuses_bad_options_in_one_line(tmp_path, args, code, message):
    home = tmp_path / "home"
    _shown(home / "recommendations")
    res = omni("report", "recs", *args, home=home)
    assert res.returncode == code, res.stderr
    assert message in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
