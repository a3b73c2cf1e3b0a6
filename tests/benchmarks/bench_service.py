"""Benchmark: `/recommend` against a trivial endpoint of the same service and a bare
BentoML service, over HTTP.

    python tests/benchmarks/bench_service.py [--home DIR] [--repeat 3] [--duration 10]
                                              [--soak 600]

Data: Complete Journey (92k products, 2,469 households), loaded and trained once into
``--home`` (default bench_results/service_home; about ten minutes the first time), then
an online snapshot. Three servers run side by side, each as `omni serve` runs it
(bentoml serve, one worker, BLAS threads 1), and wrk (``apt-get install wrk``) loads
them over loopback, one at a time, interleaved, ``--repeat`` times each:

- bare /ping: ``bare_service.py``, one async endpoint returning a pydantic model with
  BentoML's defaults (access log, metrics, tracing spans) and a frozen start-up: the
  reference for what BentoML itself costs;
- trivial: the service's ``POST /ping`` (token check, no scoring; the same middleware);
- recommend: ``POST /recommend`` with all three models, k=10 and the full rules: random
  customers, channel web / app / email / store (store requests carry the customer's
  usual store, or 1 in 5 another store, which takes the full ranking path), 2 excluded
  products each, 1 in 10 customers unknown (cold start);
- recommend, gc auto: the same on a service with Python's automatic collector
  (``OMNI_GC=auto``), to show what the collector policy changes (issue 21).

At 8 connections: throughput and p50 / p99; at 1 connection: p50 / p99. Also the
in-process cost of one request broken down by stage, the workers' memory after each
round, and with ``--soak`` the service's memory every 30 s of sustained load.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from harness import RESULTS_DIR, load_note, machine, omni, save

from serving.collector import FORCED

K = 10


def prepare(home: Path) -> Path:
    """Complete Journey, three champions and a snapshot in ``home`` (reused when there)."""
    from features.settings import get_settings
    from serving.online import SnapshotError, latest_snapshot

    settings = get_settings({"OMNI_HOME": str(home)})
    try:
        return latest_snapshot(settings)
    except SnapshotError:
        pass
    print(f"preparing {home} (first run only)", flush=True)
    if not (home / "store" / "events").exists():
        omni(home, "data", "complete-journey")
    omni(home, "train", "all")
    omni(home, "snapshot", "build")
    return latest_snapshot(settings)


def requests_for(scorer, n: int, seed: int = 0) -> list[dict]:
    """The request mix described in the module docstring."""
    rng = np.random.default_rng(seed)
    ids = np.asarray(scorer.ids, dtype=object)
    stores = list(scorer.index.store)
    items = scorer.item_ids
    out = []
    for _ in range(n):
        customer = ids[rng.integers(len(ids))] if rng.random() > 0.1 else f"new-{rng.integers(1e9)}"
        channel = ["web", "app", "email", "store"][rng.integers(4)]
        body = {"customer_id": str(customer), "channel": channel, "k": K}
        body["exclude"] = [str(p) for p in rng.choice(items[:5000], 2, replace=False)]
        if channel == "store":
            code = scorer._rec_code.get(str(customer), -1)
            usual = scorer.lists.default_store[code] if code >= 0 else -1
            if usual >= 0 and rng.random() > 0.2:
                body["store_id"] = str(scorer.catalogue.store_ids[usual])
            else:
                body["store_id"] = str(stores[rng.integers(len(stores))])
        out.append(body)
    return out


def breakdown(scorer, bodies: list[dict]) -> dict:
    """Median in-process microseconds per stage of one /recommend, over ``bodies``."""
    from features.contract.consent import consented
    from serving.rules import item_rules
    from serving.scoring import CHANNEL_CODE, _rows
    from training.recs.base import _top_k
    from training.recs.candidates import Candidates, contextual, merge, resolve_customers
    from training.recs.ranker_features import feature_matrix

    rec = scorer.recommender
    state, cat = rec.state_, rec.catalogue_
    # a real-time scorer keeps predictions, not the models' matrices (issue 17): the model
    # call stages read matrices built here as the scorer builds them
    features = scorer.snapshot.features
    X_churn = _rows(features, scorer.churn_model.features_)
    X_channel = _rows(features, scorer.channel_model.features_)
    stages: dict[str, list[float]] = {}

    def lap(name: str, t0: float) -> float:
        t1 = time.perf_counter()
        stages.setdefault(name, []).append((t1 - t0) * 1e6)
        return t1

    for body in bodies:
        cid, channel = body["customer_id"], body["channel"]
        t = time.perf_counter()
        pos = scorer.positions([cid])
        code = np.array([scorer._rec_code.get(cid, -1)], np.int32)
        t = lap("features (lookup)", t)
        if pos[0] >= 0:
            t = time.perf_counter()
            scorer.churn_model.predict_matrix(X_churn[pos], num_threads=1)
            t = lap("churn model call (1 row)", t)
            raw = scorer.channel_model.predict_matrix(X_channel[pos], num_threads=1)
            consented(raw, scorer.consent[pos])
            t = lap("channel model call + consent (1 row)", t)
        scorer.churn(pos), scorer.next_channel(pos)
        t = lap("churn + channel as served (precomputed)", t)
        rules, store = item_rules(
            scorer.index, channel, body.get("store_id"), body["exclude"], None
        )
        allowed = rules.mask(scorer.index)
        t = lap("rules", t)
        ch = np.array([CHANNEL_CODE[channel]], np.int32)
        cust = resolve_customers(state, cat, code, np.array([store], np.int32), ch)
        cand = merge(
            [scorer.personal.rows_for(code), contextual(state, cust, rec._candidate_params())],
            cat.n_items,
        )
        keep = allowed[cand.item]
        cand = Candidates(cand.pos[keep], cand.item[keep], cand.sources[keep], cand.als_rank[keep])
        t = lap("candidates (full path)", t)
        X = feature_matrix(state, cat, cust, cand)
        t = lap("ranker features (full path)", t)
        score = rec.ranker_.booster_.predict(X, num_threads=1).astype(np.float32)
        t = lap("ranker (full path)", t)
        _top_k(
            cand.pos,
            cand.item,
            score,
            np.zeros(len(score), np.int8),
            np.zeros(0, np.int64),
            cat.n_items,
            K,
        )
        t = lap("top-k (full path)", t)
        scorer.recommend([cid], K, channel, body.get("store_id"), body["exclude"])
        t = lap("recommend as served (lists or full path)", t)
    return {name: statistics.median(v) for name, v in stages.items()}


SERVICE = "serving.service:Personalization"
BARE = f"{Path(__file__).with_name('bare_service.py')}:Bare"


def start_service(
    target: str, snapshot: Path, port: int, log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen:
    """``bentoml serve target`` as `omni serve` runs it (BLAS threads 1, a token, the
    bench home so that the live loop runs), ready to answer."""
    env = {
        **os.environ,
        "OMNI_SNAPSHOT": str(snapshot),
        "OMNI_HOME": str(snapshot.parents[1]),
        "OMNI_API_TOKEN": "bench",
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        **(env or {}),
    }
    cmd = [sys.executable, "-m", "bentoml", "serve", target, "--port", str(port)]
    with open(log, "w") as out:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    from serving.process import wait_ready

    try:
        wait_ready(f"http://127.0.0.1:{port}", proc, limit=300)
    except RuntimeError as exc:
        sys.exit(f"{target} did not start: {exc}\n{log.read_text()[-2000:]}")
    return proc


def worker_rss_mb(proc: subprocess.Popen) -> float:
    """Resident memory of the service's largest process but its live refresh process
    (bench_live.py reports that one), MB."""
    import psutil

    parent = psutil.Process(proc.pid)
    return (
        max(
            p.memory_info().rss
            for p in [parent, *parent.children(recursive=True)]
            if "serving.live.refresher" not in " ".join(p.cmdline())
        )
        / 2**20
    )


LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer bench"
local bodies = {BODIES}
local path = "{PATH}"
local n = 0
request = function()
  n = n + 1
  return wrk.format(nil, path, nil, bodies[(n % #bodies) + 1])
end
"""


def _lua(path: str, bodies: list[str], folder: Path) -> Path:
    quoted = ",\n".join("[==[" + b + "]==]" for b in bodies)
    script = folder / f"{path.strip('/')}.lua"
    script.write_text(LUA.replace("{BODIES}", "{" + quoted + "}").replace("{PATH}", path))
    return script


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]


def wrk(url: str, script: Path, connections: int, seconds: int) -> dict:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    return {"rps": rps, **latency_percentiles(out), "non_2xx": non_2xx(out)}


def latency_percentiles(out: str) -> dict[str, float]:
    """p50 and p99 in ms from wrk's "Latency Distribution" lines (``     50%    2.15ms``),
    not from the "+/- Stdev" column above them, whose values (``72.50%``) also end in
    "50%" or "99%"."""
    section = out[out.index("Latency Distribution") :]
    found = dict(re.findall(r"^\s*(\d+)%\s+(\S+)\s*$", section, flags=re.MULTILINE))
    return {"p50_ms": _ms(found["50"]), "p99_ms": _ms(found["99"])}


def non_2xx(out: str) -> int:
    """Responses wrk counted as errors (not 2xx or 3xx)."""
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return int(errors.group(1)) if errors else 0


RUNS = {  # name: (service, path)
    "bare /ping": ("bare", "/ping"),
    "trivial": ("service", "/ping"),
    "recommend": ("service", "/recommend"),
    "recommend, gc auto": ("auto", "/recommend"),
}
SERVICES = {"bare": (BARE, {}), "service": (SERVICE, {}), "auto": (SERVICE, {"OMNI_GC": "auto"})}
FEATURES = ("spans", "access_log", "metrics")
"""BentoML's per-request features: each is measured as a bare service without it."""
SERVICES |= {f"bare without {f}": (BARE, {"BARE_WITHOUT": f}) for f in FEATURES}


def soak(url: str, script: Path, proc: subprocess.Popen, seconds: int) -> list[dict]:
    """wrk at 8 connections for ``seconds`` in 30 s stretches, the worker's memory after
    each: whether it stays flat under sustained load."""
    samples, t0 = [], time.monotonic()
    while time.monotonic() - t0 < seconds:
        run = wrk(url, script, 8, 30)
        samples.append({"s": round(time.monotonic() - t0), "rss_mb": worker_rss_mb(proc), **run})
        print(f"  soak {samples[-1]['s']:>4} s: RSS {samples[-1]['rss_mb']:.0f} MB", flush=True)
    return samples


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--home", type=Path, default=RESULTS_DIR / "service_home")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    ap.add_argument(
        "--soak",
        type=int,
        default=0,
        help="then /recommend at 8 connections for this many seconds, memory sampled "
        "every 30 s (issue 21: 600)",
    )
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install wrk")
    snapshot = prepare(args.home.resolve())

    from serving.online import load_snapshot
    from serving.process import free_port
    from serving.scoring import Scorer

    t0 = time.perf_counter()
    scorer = Scorer(load_snapshot(snapshot), ranked_lists=50)
    start_s = time.perf_counter() - t0
    bodies = requests_for(scorer, 2000)
    stages = breakdown(scorer, bodies[:1000])
    print(
        f"snapshot {snapshot.name}: {len(scorer.ids):,} customers, "
        f"{scorer.catalogue.n_items:,} products; scorer start-up {start_s:.1f} s"
    )
    print("in-process cost of one /recommend, median µs:")
    for name, us in stages.items():
        print(f"  {name:<42} {us:8.1f}")
    customers, products = len(scorer.ids), int(scorer.catalogue.n_items)
    del scorer

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        procs, urls = {}, {}
        try:
            for name, (target, env) in SERVICES.items():
                port = free_port(0)
                urls[name] = f"http://127.0.0.1:{port}"
                procs[name] = start_service(target, snapshot, port, folder / f"{name}.log", env)
            scripts = {
                "/ping": _lua("/ping", ["{}"], folder),
                "/recommend": _lua("/recommend", [json.dumps(b) for b in bodies], folder),
            }
            for service, path in RUNS.values():  # warm-up
                wrk(urls[service], scripts[path], 8, 2)
            runs: dict[str, dict[str, list[dict]]] = {n: {"c8": [], "c1": []} for n in RUNS}
            rss: list[dict] = []
            costs: dict[str, list[float]] = {}
            for i in range(args.repeat):
                for name, (service, path) in RUNS.items():
                    runs[name]["c8"].append(wrk(urls[service], scripts[path], 8, args.duration))
                    runs[name]["c1"].append(wrk(urls[service], scripts[path], 1, args.duration))
                for feature in FEATURES:
                    name = f"bare without {feature}"
                    costs.setdefault(feature, []).append(
                        wrk(urls[name], scripts["/ping"], 8, args.duration)["rps"]
                    )
                rss.append({n: worker_rss_mb(procs[n]) for n in ("bare", "service", "auto")})
                print(f"  round {i + 1}/{args.repeat} done", flush=True)
            soaked = (
                soak(urls["service"], scripts["/recommend"], procs["service"], args.soak)
                if args.soak
                else []
            )
        finally:
            for proc in procs.values():
                proc.terminate()
            for proc in procs.values():
                proc.wait(timeout=30)
        collections = (folder / "service.log").read_text().count(FORCED)

    def med(name: str, conn: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[name][conn])

    table = {
        name: {
            "rps_c8": med(name, "c8", "rps"),
            "p50_ms_c8": med(name, "c8", "p50_ms"),
            "p99_ms_c8": med(name, "c8", "p99_ms"),
            "p50_ms_c1": med(name, "c1", "p50_ms"),
            "p99_ms_c1": med(name, "c1", "p99_ms"),
            "non_2xx": sum(r["non_2xx"] for c in runs[name].values() for r in c),
        }
        for name in runs
    }
    b, t, r = table["bare /ping"], table["trivial"], table["recommend"]
    goals = {
        "throughput_ratio": r["rps_c8"] / t["rps_c8"],
        "trivial_vs_bare": t["rps_c8"] / b["rps_c8"],
        "p99_ms_c8": r["p99_ms_c8"],
        "p99_ms_c1": r["p99_ms_c1"],
        "p50_ms_c1": r["p50_ms_c1"],
    }
    heads = ("req/s @8", "p50 @8", "p99 @8", "p50 @1", "p99 @1")
    print(
        f"\nmedians of {args.repeat} interleaved runs of {args.duration} s each (ms; {load_note()})"
    )
    print(f"{'endpoint':<20} " + " ".join(f"{h:>9}" for h in heads))
    for name, row in table.items():
        print(
            f"{name:<20} {row['rps_c8']:9.0f} {row['p50_ms_c8']:9.2f} {row['p99_ms_c8']:9.2f}"
            f" {row['p50_ms_c1']:9.2f} {row['p99_ms_c1']:9.2f}"
        )
    print(
        f"\n/recommend p99 @8 = {goals['p99_ms_c8']:.1f} ms (goal < 20), "
        f"p99 @1 = {goals['p99_ms_c1']:.1f} ms (goal < 10), "
        f"p50 @1 = {goals['p50_ms_c1']:.2f} ms (goal < 5); "
        f"throughput = {goals['throughput_ratio']:.0%} of trivial (goal >= 60%); "
        f"trivial = {goals['trivial_vs_bare']:.0%} of bare BentoML (goal >= 80%)"
    )
    bare_us = 1e6 / b["rps_c8"]
    feature_cost = {
        f: {
            "rps_without": statistics.median(v),
            "us_per_request": bare_us - 1e6 / statistics.median(v),
            "share_of_bare": 1 - b["rps_c8"] / statistics.median(v),
        }
        for f, v in costs.items()
    }
    print(
        "what BentoML's per-request features cost the bare service (req/s @8 without it; "
        "µs a request; share of its throughput): "
        + "; ".join(
            f"{f} {c['rps_without']:.0f}, {c['us_per_request']:.0f} µs, {c['share_of_bare']:.0%}"
            for f, c in feature_cost.items()
        )
    )
    print(
        "worker RSS after each round, MB: "
        + "; ".join(", ".join(f"{n} {v:.0f}" for n, v in row.items()) for row in rss)
    )
    if soaked:
        first, last = soaked[0], soaked[-1]
        sizes = [x["rss_mb"] for x in soaked]
        spread = (max(sizes) - min(sizes)) / min(sizes)
        goals["soak_rss_spread"] = spread
        print(
            f"soak: {last['s']} s of /recommend at 8 connections: RSS {first['rss_mb']:.0f} -> "
            f"{last['rss_mb']:.0f} MB, spread {spread:.1%} (goal within 5%); "
            f"p99 per 30 s {min(x['p99_ms'] for x in soaked):.1f}-"
            f"{max(x['p99_ms'] for x in soaked):.1f} ms; "
            f"collections forced by growth: {collections}"
        )
    save(
        "service",
        {
            "machine": machine(),
            "snapshot": snapshot.name,
            "customers": customers,
            "products": products,
            "stages_us": stages,
            "table": table,
            "goals": goals,
            "bentoml_feature_cost": feature_cost,
            "rss_mb_by_round": rss,
            "soak": soaked,
            "forced_collections": collections,
            "runs": runs,
        },
    )


if __name__ == "__main__":
    main()
