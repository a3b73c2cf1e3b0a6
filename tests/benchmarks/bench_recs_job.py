"""Benchmark (issue 16): the recommendation job on Complete Journey, this tree against a
reference commit (default ``main``), in alternating fresh processes on the same machine.

Each run encodes the events and calls ``training.recs.job.fit_and_evaluate`` with the
job's defaults (this tree: ALS search on the validation window, then the fit); reported:
median seconds of ``Recommender.fit`` and of the ALS search, and the test-window metrics
of the model (default split: the last 14 days).

    python tests/benchmarks/bench_recs_job.py --repeat 3
    python tests/benchmarks/bench_recs_job.py --reference main --repeat 3
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import child_report, load_note, run_child, save

ROOT = Path(__file__).resolve().parents[2]

METRICS = ("test_ndcg_at_10", "test_new_ndcg_at_10", "test_recall_at_10", "test_map_at_10")


def _child(tree: Path) -> None:
    sys.path.insert(0, str(tree))  # the tree under test, before anything imports training
    from features.sources.complete_journey import load_complete_journey
    from training.recs.data import History
    from training.recs.job import fit_and_evaluate

    d = load_complete_journey()
    t0 = time.perf_counter()
    history = History.from_frames(d.events, d.customers, d.products, d.stores)
    result = fit_and_evaluate(history, seed=42)
    child_report(
        time.perf_counter() - t0,
        fit=result.seconds["fit_model"],
        als_search=result.seconds.get("als_search", 0.0),
        **{m: result.metrics[m] for m in METRICS},
    )


def _export(ref: str, into: Path) -> Path:
    """The source tree of ``ref`` (git archive), to import the reference code from."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref], capture_output=True)
    if archive.returncode:
        sys.exit(f"git archive {ref} failed: {archive.stderr.decode()[-500:]}")
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reference", default="main")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", action="store_true")
    parser.add_argument("--tree", default=str(ROOT))
    args = parser.parse_args()
    if args.child:
        _child(Path(args.tree))
        return
    with tempfile.TemporaryDirectory() as tmp:
        trees = {args.reference: _export(args.reference, Path(tmp)), "this tree": ROOT}
        runs: dict[str, list[dict]] = {name: [] for name in trees}
        for _ in range(args.repeat):  # alternate, so load changes hit both alike
            for name, tree in trees.items():
                runs[name].append(run_child(Path(__file__), ["--tree", str(tree)]))
    print(f"Complete Journey, median of {args.repeat} runs ({load_note()})")
    cols = ("fit", "als_search", *METRICS)
    print(f"{'':12}" + "".join(f"{c:>22}" for c in cols))
    table = {}
    for name, rs in runs.items():
        table[name] = {c: statistics.median(r[c] for r in rs) for c in cols}
        print(f"{name:12}" + "".join(f"{table[name][c]:>22.4f}" for c in cols))
    save("recs_job", {"reference": args.reference, "medians": table, "runs": runs})


if __name__ == "__main__":
    main()
