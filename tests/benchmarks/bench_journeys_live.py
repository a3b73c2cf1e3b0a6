"""Benchmark: what deciding the journeys in real time adds per live event, beside what
the live refresh itself costs per event (issue 18's goal: under 1 ms per event on
average).

    python tests/benchmarks/bench_journeys_live.py [--home DIR] [--batches 40] [--repeat 3]

Data: bench_live.py's home (a synthetic `omni run --customers 5000`), with the four
shipped journeys and policy. In one process, the service's pieces: a real-time scorer
of the snapshot, the online state (:class:`serving.live.state.LiveState`) and
:class:`serving.journeys.live.LiveJourneys`. Batches of 1,000 events (views, carts and
purchases of known customers, an hour of event time per batch, checked, given ids and
resolved as POST /events does) go through the refresh and are applied; the journeys note
each refresh, and decide after every fifth batch (the service decides every 5 s, its
refresh runs every 250 ms). Timed apart: the refreshes (the reference) and the journeys'
notes and decisions. Medians of ``--repeat`` runs, each from a fresh state.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
import pandas as pd
from bench_live import prepare
from harness import RESULTS_DIR, load_note, save

BATCH = 1000
DECIDE_EVERY = 5
TYPES = np.array(["view", "view", "add_to_cart", "purchase"])


def batches(known: list[str], products: list[str], start: pd.Timestamp, n: int, seed: int):
    """``n`` lists of ``BATCH`` event records, an hour of event time each."""
    rng = np.random.default_rng(seed)
    out = []
    for b in range(n):
        who = rng.integers(len(known), size=BATCH)
        what = rng.integers(len(products), size=BATCH)
        kind = TYPES[rng.integers(len(TYPES), size=BATCH)]
        at = (
            start
            + pd.Timedelta(hours=b)
            + pd.to_timedelta(np.sort(rng.integers(0, 3600, BATCH)), "s")
        )
        out.append(
            [
                {
                    "customer_id": known[c],
                    "ts": t.isoformat(),
                    "channel": "web",
                    "event_type": k,
                    "product_id": products[p],
                    "order_id": f"bench-{seed}-{b}-{i}" if k == "purchase" else None,
                    "quantity": 1 if k == "purchase" else None,
                    "amount": 9.5 if k == "purchase" else None,
                }
                for i, (c, p, k, t) in enumerate(zip(who, what, kind, at, strict=True))
            ]
        )
    return out


def one_run(home: Path, n_batches: int, seed: int) -> dict:
    from features.contract.schema import EVENTS, with_every_column
    from features.contract.validate import validate_frame
    from features.settings import get_settings
    from features.store.event_ids import assign_event_ids
    from features.store.events import read_events, read_identity_graph, read_table
    from serving.journeys.live import LiveJourneys
    from serving.live.identity import OnlineIdentity
    from serving.live.state import LiveState, window_start
    from serving.online import LIST_DEPTH, latest_snapshot, load_snapshot
    from serving.scoring import Scorer

    settings = get_settings({"OMNI_HOME": str(home)})
    snapshot = load_snapshot(latest_snapshot(settings))
    scorer = Scorer(snapshot, num_threads=1, ranked_lists=LIST_DEPTH)
    window = read_events(settings.store_dir, start=window_start(scorer.as_of))
    state = LiveState(scorer, window, read_table(settings.store_dir, "customers"), scorer.as_of)
    identity = OnlineIdentity(
        read_identity_graph(settings.store_dir), settings.max_identity_component
    )
    journeys = LiveJourneys(settings, scorer, scorer.as_of)
    known = scorer.ids[:5000].tolist()
    products = read_table(settings.store_dir, "products")["product_id"].tolist()
    records = batches(known, products, scorer.as_of, n_batches, seed)
    frames = []
    for r in records:  # what POST /events does before the refresh (not timed)
        valid = validate_frame(pd.DataFrame.from_records(r), EVENTS, "events")
        frames.append(identity.resolve(assign_event_ids(with_every_column(valid.good))))
    refresh_s = journeys_s = 0.0
    decided = 0
    for i, batch in enumerate(frames):
        t0 = time.perf_counter()
        refresh = state.refresh(batch)
        state.apply(refresh)
        t1 = time.perf_counter()
        journeys.note(batch, refresh.rows, refresh.as_of)
        if (i + 1) % DECIDE_EVERY == 0:
            decided += len(journeys.evaluate(scorer))
        t2 = time.perf_counter()
        refresh_s += t1 - t0
        journeys_s += t2 - t1
    events = n_batches * BATCH
    return {
        "events": events,
        "refresh_ms_per_event": 1000 * refresh_s / events,
        "journeys_ms_per_event": 1000 * journeys_s / events,
        "decisions": decided,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--home", type=Path, default=RESULTS_DIR / "live_home")
    ap.add_argument("--batches", type=int, default=40)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    from serving.cli.journeys import examples_dir

    prepare(args.home.resolve())
    runs = []
    for r in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            home = Path(tmp) / "home"
            shutil.copytree(
                args.home, home, ignore=shutil.ignore_patterns("journal", "mlartifacts")
            )
            shutil.copytree(examples_dir(), home / "journeys")
            runs.append(one_run(home, args.batches, seed=r))
        last = runs[-1]
        print(
            f"  run {r + 1}/{args.repeat}: refresh {last['refresh_ms_per_event']:.3f} ms/event, "
            f"journeys {last['journeys_ms_per_event']:.3f} ms/event, "
            f"{last['decisions']:,} decisions",
            flush=True,
        )
    med = {
        k: statistics.median(r[k] for r in runs)
        for k in ("refresh_ms_per_event", "journeys_ms_per_event")
    }
    print(
        f"\n{runs[0]['events']:,} events per run, medians of {args.repeat} ({load_note()}):\n"
        f"  live refresh (reference): {med['refresh_ms_per_event']:.3f} ms per event\n"
        f"  journeys decided live:    {med['journeys_ms_per_event']:.3f} ms per event; "
        "goal: under 1 ms"
    )
    save("journeys_live", {"medians": med, "runs": runs})


if __name__ == "__main__":
    main()
