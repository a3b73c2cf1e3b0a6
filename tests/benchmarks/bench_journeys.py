"""Benchmark: one batch evaluation of every shipped journey over 1M customers, beside
batch scoring of the same customers (the job a daily journeys run sits next to).

    python tests/benchmarks/bench_journeys.py [--customers 1000000] [--days 60] [--repeat 3]

Set-up: bench_batch.py's home (models trained on 20,000 customers, then a store of
``--customers`` synthetic customers x ``--days`` days and its snapshot), with the shipped
example journeys and policy copied in. Then, interleaved in fresh processes, ``--repeat``
times each:

- journeys: ``serving.journeys.evaluate.evaluate`` of the four shipped journeys as of the
  snapshot's moment, confirmed, nothing written (every run is a first run: with no
  previous churn scores, everyone already in the win-back band is triggered, the worst
  case of a daily run);
- scoring: ``serving.batch.run_batch`` of every customer (churn, channel, top 10).

Goal (issue 18): the journeys under 60 s for 1M customers.
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_batch import batch_home_arguments, prepare
from harness import child_report, load_note, run_child, save


def install_examples(home: Path) -> None:
    """The shipped journeys and policy in the home's journeys folder (replacing any)."""
    from serving.cli.journeys import examples_dir

    folder = home / "journeys"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(examples_dir(), folder)


def child_journeys(home: Path) -> None:
    import pandas as pd

    from features.settings import get_settings
    from serving.journeys.evaluate import evaluate
    from serving.journeys.spec import load_journeys, load_policy
    from serving.online import latest_snapshot, read_manifest

    settings = get_settings({"OMNI_HOME": str(home)})
    as_of = pd.Timestamp(read_manifest(latest_snapshot(settings))["as_of"])
    journeys = load_journeys(settings.journeys_dir)
    policy = load_policy(settings.journeys_dir)
    t0 = time.perf_counter()
    result = evaluate(
        settings, journeys, policy, as_of, confirm=lambda _q: True, write=False, say=lambda _m: None
    )
    seconds = time.perf_counter() - t0
    d = result.decisions
    child_report(
        seconds,
        customers=result.customers,
        decisions=len(d),
        messages=int((d["status"] != "not_sent").sum()),
        per_journey=d.groupby("journey").size().to_dict(),
        stages={k: round(v, 2) for k, v in result.seconds.items()},
    )


def child_scoring(home: Path) -> None:
    from features.settings import get_settings
    from serving.batch import run_batch

    settings = get_settings({"OMNI_HOME": str(home)})
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        result = run_batch(settings, Path(tmp) / "scores", say=lambda _m: None)
        seconds = time.perf_counter() - t0
    child_report(seconds, customers=result.customers)


def main() -> None:
    args = batch_home_arguments(__doc__, ("journeys", "scoring"))
    home = args.home.resolve()
    if args.child:
        (child_journeys if args.contender == "journeys" else child_scoring)(home)
        return
    prepare(home, args.customers, args.days)
    install_examples(home)
    runs: dict[str, list[dict]] = {"journeys": [], "scoring": []}
    for i in range(args.repeat):
        for name in runs:
            runs[name].append(
                run_child(Path(__file__), ["--contender", name, "--home", str(home)], 3600)
            )
        print(
            f"  round {i + 1}/{args.repeat}: journeys {runs['journeys'][-1]['seconds']:.1f} s, "
            f"scoring {runs['scoring'][-1]['seconds']:.1f} s",
            flush=True,
        )
    med = {k: statistics.median(r["seconds"] for r in v) for k, v in runs.items()}
    last = runs["journeys"][-1]
    print(
        f"\n{last['customers']:,} customers, medians of {args.repeat} ({load_note()}):\n"
        f"  journeys (4 shipped, nothing written): {med['journeys']:6.1f} s  "
        f"peak {statistics.median(r['peak_rss_mb'] for r in runs['journeys']):,.0f} MB; "
        f"goal: under 60 s\n"
        f"  batch scoring of every customer:       {med['scoring']:6.1f} s\n"
        f"  last journeys run: {last['decisions']:,} decisions, {last['messages']:,} messages, "
        f"{last['per_journey']}; stages {last['stages']}"
    )
    save("journeys", {"medians_s": med, "runs": runs})


if __name__ == "__main__":
    main()
