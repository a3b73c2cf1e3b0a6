"""Benchmark: the live loop over HTTP (issue 17).

    python tests/benchmarks/bench_live.py [--home DIR] [--repeat 3] [--duration 10]

Data: a synthetic home made by `omni run --customers 5000` (``--home``, default
bench_results/live_home; about a minute the first time), copied afresh for every repeat
so each starts from an empty journal. The service runs as `omni serve` does it (one
worker, live events on, the journal on local disk). Each repeat, in this order:

- quiet: ``/recommend`` at one connection (random known customers, k=10), no ingest;
- ingest alone: one client posts batches of 1,000 new purchase events for half the time
  (in a process of its own, the request bodies built before the clock starts: the load
  generator's work stays out of the server's numbers as far as 2 cores allow);
- ingest: one client posts batches of 1,000 new purchase events (distinct event ids,
  known customers) as fast as they are answered, while a second client measures
  ``/recommend`` at one connection: accepted events/s and /recommend p50 / p99;
- the same with ``/recommend`` paced at 100 requests a second (a reading load that leaves
  the worker time to ingest), reported apart;
- the same with each random customer read three times back to back (a page's placements,
  or the next page), the second and third reads reported: what a live customer's kept
  list answers (their first read ranks them in full, unless the refresh had the time
  to rank them ahead);
- visible (during each ingest too, after its rates are taken): single product views of
  customers the service does not know yet, each followed by ``/recommend`` polls every
  5 ms until the list is personal (no longer cold start): the time from the 2xx of
  ``/events`` to the first answer that reflects it, p50 / p99 (alone, and during ingest);
- steady (on a fresh copy of the home and a new service): quiet reads, then the
  ingest paced at the goal's 5,000 events/s (a batch every 0.2 s) while ``/recommend`` is
  called back to back: the reads' p50 during an ingest at the goal's rate, not at the
  most the machine takes (which leaves the reads no idle core);
- half (last): the same at half that rate, which leaves the refresh process idle time to
  rank the touched customers' lists ahead (stop 48).

The service reads the environment: ``OMNI_LIVE_MAX_BEHIND=5000`` measures the
back-pressure setting for throughput. Client and server share the machine's 2 cores;
the load average is printed beside the numbers. Results: bench_results/live.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
import requests
from harness import RESULTS_DIR, load_note, omni, save

BATCH = 1000
TIMEOUT = 30
PACED_READS = 100.0
"""/recommend requests a second of the paced reader."""
GOAL_RATE = 5000.0
"""Events a second of the steady ingest: the issue's goal (issue 17)."""


def prepare(home: Path) -> None:
    """A trained synthetic home with a snapshot (reused when there)."""
    if not (home / "online" / "LATEST").exists():
        print(f"preparing {home} (first run only)", flush=True)
        omni(home, "run", "--customers", "5000")


def start(home: Path, log: Path) -> tuple[subprocess.Popen, str]:
    import os

    from serving.process import free_port, wait_ready

    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["OMNI_HOME"] = str(home)
    cmd = [sys.executable, "-m", "serving.cli", "serve", "--port", str(port)]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_ready(url, proc, limit=300, log=log)
    return proc, url


ROLES = ("worker", "refresh")
PARTS = {"rss": "VmRSS", "anon": "RssAnon", "file": "RssFile"}
"""A process's resident memory (``/proc/PID/status``), whole and split into private memory
(``RssAnon``) and mapped file pages (``RssFile``: the snapshot's serving arrays and the
store's event ids among them, shared between processes and reclaimable)."""


def memory_mb(proc: subprocess.Popen) -> dict[str, float]:
    """``<role>_<part>`` MB (:data:`ROLES` x :data:`PARTS`): the service's worker (its
    largest process but the refresh process) and its live refresh process."""
    import psutil

    server = psutil.Process(proc.pid)
    out = {f"{role}_{part}": 0.0 for role in ROLES for part in PARTS}
    for p in [server, *server.children(recursive=True)]:
        role = "refresh" if "serving.live.refresher" in " ".join(p.cmdline()) else "worker"
        status = dict(
            line.split(":", 1) for line in Path(f"/proc/{p.pid}/status").read_text().splitlines()
        )
        kb = {part: int(status[field].split()[0]) for part, field in PARTS.items()}
        if kb["rss"] / 1024 > out[f"{role}_rss"]:
            out |= {f"{role}_{part}": v / 1024 for part, v in kb.items()}
    return out


def rss_mb(proc: subprocess.Popen) -> dict[str, float]:
    """Resident memory, MB, of the service's worker and of its live refresh process."""
    memory = memory_mb(proc)
    return {role: memory[f"{role}_rss"] for role in ROLES}


def percentiles(ms: list[float]) -> dict[str, float]:
    return {
        "n": len(ms),
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
    }


def recommend_latencies(
    url: str,
    customers: list[str],
    stop: threading.Event,
    rate: float | None = None,
    out: list[float] | None = None,
    times: int = 1,
) -> list[float]:
    """/recommend latencies (ms) until ``stop``, appended to ``out`` as they come: back to
    back, or ``rate`` requests a second. ``times`` > 1: each random customer is asked
    that many times back to back (a page's placements, or the next page) and only the
    repeats are recorded: what a live customer's kept list answers."""
    session, rng = requests.Session(), np.random.default_rng(1)
    out = [] if out is None else out
    start = time.perf_counter()
    while not stop.is_set():
        if rate:  # the n-th request goes out at n / rate seconds
            time.sleep(max(0.0, len(out) / rate - (time.perf_counter() - start)))
        body = {"customer_id": customers[rng.integers(len(customers))], "k": 10}
        for n in range(times):
            t0 = time.perf_counter()
            answer = session.post(f"{url}/recommend", json=body, timeout=TIMEOUT)
            if n or times == 1:
                out.append((time.perf_counter() - t0) * 1000)
            assert answer.status_code == 200, answer.text
    return out


def payloads(customers: list[str], products: list[str], tag: str, n: int, first: int = 0):
    """``n`` request bodies of ``BATCH`` new purchases each (JSON bytes, distinct event
    ids), batches ``first`` .. ``first + n - 1``."""
    rng = np.random.default_rng(first + 2)
    out = []
    for b in range(first, first + n):
        who = rng.integers(len(customers), size=BATCH)
        what = rng.integers(len(products), size=BATCH)
        events = [
            {
                "customer_id": customers[c],
                "ts": f"2026-01-01T{i // 3600 % 24:02d}:{i // 60 % 60:02d}:{i % 60:02d}Z",
                "channel": "web",
                "event_type": "purchase",
                "order_id": f"{tag}-{b}-{i // 5}",
                "product_id": products[p],
                "quantity": 1,
                "amount": 9.5,
                "event_id": f"{tag}-{b}-{i}",
            }
            for i, (c, p) in enumerate(zip(who, what, strict=True))
        ]
        out.append(json.dumps({"events": events}).encode())
    return out


def ingest(
    url: str, bodies: list[bytes], stop, progress=None, rate: float | None = None
) -> tuple[int, float]:
    """Post the prepared batches until ``stop`` (or none is left), back to back or
    ``rate`` events a second; returns (events accepted, seconds). ``progress`` gets
    (seconds, events accepted so far) per batch."""
    session, accepted = requests.Session(), 0
    headers = {"Content-Type": "application/json"}
    t0 = time.perf_counter()
    for n, body in enumerate(bodies):
        if rate:  # the n-th batch goes out at n * BATCH / rate seconds
            time.sleep(max(0.0, n * BATCH / rate - (time.perf_counter() - t0)))
        if stop.is_set():
            break
        answer = session.post(f"{url}/events", data=body, headers=headers, timeout=TIMEOUT)
        assert answer.status_code == 200, answer.text
        accepted += answer.json()["accepted"]
        if progress is not None:
            progress.append((time.perf_counter() - t0, accepted))
    return accepted, time.perf_counter() - t0


def _ingest_process(url, customers, products, tag, batches, rate, ready, go, stop, results) -> None:
    """The ingest client in a process of its own (a load generator's CPU and GIL apart
    from the reader's): bodies built before ``go``, then posted until ``stop``."""
    bodies = payloads(customers, products, tag, batches)
    ready.set()
    go.wait()
    progress: list = []
    ingest(url, bodies, stop, progress, rate)
    results.put(progress)


class IngestClient:
    """Starts :func:`_ingest_process` with enough batches for ``seconds`` at
    ``max_rate`` events/s (``rate``: posted at that pace, else back to back);
    :meth:`stop` returns its progress [(seconds, accepted)]."""

    def __init__(self, url, customers, products, tag, seconds, max_rate=20_000, rate=None) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.ready, self.go, self._stop = ctx.Event(), ctx.Event(), ctx.Event()
        self.results = ctx.Queue()
        batches = int(seconds * (rate or max_rate) / BATCH) + 1
        args = (url, customers, products, tag, batches, rate, self.ready, self.go, self._stop)
        self.proc = ctx.Process(target=_ingest_process, args=(*args, self.results))
        self.proc.start()
        self.ready.wait(timeout=300)

    def start(self) -> None:
        self.go.set()

    def stop(self) -> list[tuple[float, int]]:
        self._stop.set()
        progress = self.results.get(timeout=TIMEOUT + 30)
        self.proc.join(timeout=30)
        if not progress:
            raise RuntimeError("the ingest client posted nothing")
        return progress


def visible_latencies(url: str, n: int, tag: str, products: list[str]) -> list[float]:
    """A product view of a customer the service does not know, then ``/recommend`` polls
    until the answer reflects it (a personal list, no longer cold start: the feature row,
    the scores and the ranked list are all in): ms from the 2xx of ``/events``."""
    session, out = requests.Session(), []
    for i in range(n):
        customer = f"{tag}-new-{i}"
        event = {"customer_id": customer, "ts": "2026-01-01T12:00:00Z", "channel": "web",
                 "event_type": "view", "product_id": products[i % len(products)]}  # fmt: skip
        answer = session.post(f"{url}/events", json={"events": [event]}, timeout=TIMEOUT)
        assert answer.status_code == 200, answer.text
        t0 = time.perf_counter()
        while True:
            check = session.post(
                f"{url}/recommend", json={"customer_id": customer, "k": 10}, timeout=TIMEOUT
            )
            if not check.json()["cold_start"]:
                break
            time.sleep(0.005)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def ingest_while_reading(
    url: str,
    customers: list[str],
    products: list[str],
    duration: float,
    tag: str,
    read_rate: float | None,
    times: int = 1,
    visible: bool = True,
    ingest_rate: float | None = None,
) -> dict:
    """One client ingesting (its own process; back to back, or ``ingest_rate`` events a
    second) and one reading /recommend (back to back or at ``read_rate``; ``times``: see
    :func:`recommend_latencies`): the ingest rate and read latencies over ``duration``,
    then, while both go on, event-to-visible probes (reported apart: their polling is
    load of its own; ``visible`` False: none)."""
    client = IngestClient(url, customers, products, f"i{tag}", duration + 60, rate=ingest_rate)
    stop, reads = threading.Event(), []
    args = (url, customers, stop, read_rate, reads, times)
    reader = threading.Thread(target=recommend_latencies, args=args)
    client.start()
    reader.start()
    time.sleep(duration)
    n_reads = len(reads)
    during = visible_latencies(url, 50, f"d{tag}", products) if visible else []
    stop.set()
    progress = client.stop()
    reader.join()
    measured = [p for p in progress if p[0] <= duration] or progress[:1]
    result = {
        "ingest_events_per_s": measured[-1][1] / measured[-1][0],
        "ingest_recommend": percentiles(reads[:n_reads]),
    }
    return result | ({"visible_during_ingest": percentiles(during)} if visible else {})


def copied_home(source: Path, prefix: str) -> tuple[Path, Path, list[str], list[str]]:
    """A copy of the home ``source`` in a new temporary folder: (the folder, the home,
    its customer ids, its product ids)."""
    from features.settings import get_settings
    from features.store.events import read_table

    work = Path(tempfile.mkdtemp(prefix=prefix))
    home = work / "home"
    shutil.copytree(source, home)
    settings = get_settings({"OMNI_HOME": str(home)})
    customers = read_table(settings.store_dir, "customers")["customer_id"].tolist()
    products = read_table(settings.store_dir, "products")["product_id"].tolist()
    return work, home, customers, products


@contextlib.contextmanager
def served_copy(source: Path, prefix: str):
    """A service on a fresh copy of the home ``source`` (:func:`copied_home`), ready:
    yields (its process, its url, the customer ids, the product ids); stopped and the
    copy removed after."""
    work, home, customers, products = copied_home(source, prefix)
    proc, url = start(home, work / "service.log")
    try:
        yield proc, url, customers, products
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


def quiet_reads(url: str, customers: list[str], duration: float) -> dict:
    """/recommend p50 / p99 back to back for ``duration`` seconds, nothing else going on."""
    stop = threading.Event()
    threading.Timer(duration, stop.set).start()
    return percentiles(recommend_latencies(url, customers, stop))


def one_repeat(source: Path, duration: float, r: int) -> dict:
    with served_copy(source, "bench-live-") as (proc, url, customers, products):
        result: dict = {"customers": len(customers), "rss_mb_at_start": rss_mb(proc)}
        result["quiet_recommend"] = quiet_reads(url, customers, duration)
        result["visible_quiet"] = percentiles(visible_latencies(url, 100, f"q{r}", products))

        client = IngestClient(url, customers, products, f"a{r}", duration / 2)
        client.start()
        time.sleep(duration / 2)
        seconds, accepted = client.stop()[-1]
        result["ingest_alone_events_per_s"] = accepted / seconds

        for name, read_rate in (("", None), ("paced_", PACED_READS)):
            measured = ingest_while_reading(
                url, customers, products, duration, f"{name}{r}", read_rate
            )
            result |= {f"{name}{k}": v for k, v in measured.items()}
        measured = ingest_while_reading(
            url, customers, products, duration, f"repeat_{r}", None, times=3, visible=False
        )
        result |= {f"repeat_{k}": v for k, v in measured.items()}
        result["rss_mb_after_ingest"] = rss_mb(proc)
    return result


def steady_repeat(
    source: Path, duration: float, r: int, rate: float = GOAL_RATE, prefix: str = "steady_"
) -> dict:
    """On a fresh copy of the home and service: quiet reads, then the ingest paced at
    ``rate`` while ``/recommend`` is called back to back (every result key prefixed
    ``prefix``): the reads during an ingest at that rate, from the same starting state as
    the quiet ones, not after the other phases' events."""
    with served_copy(source, "bench-live-steady-") as (_proc, url, customers, products):
        result = {"quiet_recommend": quiet_reads(url, customers, duration)}
        result |= ingest_while_reading(
            url, customers, products, duration, f"{prefix}{r}", None, ingest_rate=rate
        )
    return {f"{prefix}{k}": v for k, v in result.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--home", type=Path, default=RESULTS_DIR / "live_home")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0)
    args = parser.parse_args()
    prepare(args.home)
    runs = []
    for r in range(args.repeat):
        runs.append(one_repeat(args.home, args.duration, r))
        runs[-1] |= steady_repeat(args.home, args.duration, r)
        runs[-1] |= steady_repeat(args.home, args.duration, r, GOAL_RATE / 2, "half_")
        print(f"repeat {r + 1}: {runs[-1]}  ({load_note()})", flush=True)

    def med(path: str, key: str | None = None) -> float:
        values = [run[path][key] if key else run[path] for run in runs]
        return statistics.median(values)

    print(f"\nmedians of {len(runs)} repeats ({load_note()}):")
    print("| measure | value |\n|---|---:|")
    alone, rate = med("ingest_alone_events_per_s"), med("ingest_events_per_s")
    print(f"| ingest alone, events/s accepted (one worker, batches of {BATCH}) | {alone:,.0f} |")
    print(f"| ingest while /recommend is called back to back, events/s | {rate:,.0f} |")
    paced = med("paced_ingest_events_per_s")
    print(f"| ingest while /recommend is called {PACED_READS:.0f} times a second | {paced:,.0f} |")
    again = med("repeat_ingest_events_per_s")
    print(f"| ingest while customers are read three times in a row, events/s | {again:,.0f} |")
    steady = med("steady_ingest_events_per_s")
    print(f"| ingest paced at {GOAL_RATE:,.0f}/s while /recommend is called back to back, "
          f"events/s | {steady:,.0f} |")  # fmt: skip
    for name in (
        "quiet_recommend", "ingest_recommend", "paced_ingest_recommend",
        "repeat_ingest_recommend", "steady_quiet_recommend", "steady_ingest_recommend",
        "visible_quiet", "visible_during_ingest", "paced_visible_during_ingest",
        "steady_visible_during_ingest",
    ):  # fmt: skip
        print(f"| {name} p50 / p99 ms | {med(name, 'p50_ms'):.1f} / {med(name, 'p99_ms'):.1f} |")
    n = f"{runs[0]['customers']:,} customers"
    for role in ("worker", "refresh"):
        at_start, after = med("rss_mb_at_start", role), med("rss_mb_after_ingest", role)
        print(f"| {role} process memory at start / after the ingest, MB ({n}) | "
              f"{at_start:,.0f} / {after:,.0f} |")  # fmt: skip
    quiet = med("quiet_recommend", "p50_ms")
    ratio = med("ingest_recommend", "p50_ms") / quiet
    print(f"| /recommend p50 during ingest / quiet | {ratio:.2f}x |")
    ratio = med("repeat_ingest_recommend", "p50_ms") / quiet
    print(f"| /recommend p50 of repeat reads during ingest / quiet | {ratio:.2f}x |")
    steady_quiet = med("steady_quiet_recommend", "p50_ms")
    ratio = med("steady_ingest_recommend", "p50_ms") / steady_quiet
    print(f"| /recommend p50 during the ingest at {GOAL_RATE:,.0f}/s / quiet | {ratio:.2f}x |")
    half = med("half_ingest_events_per_s")
    ratio = med("half_ingest_recommend", "p50_ms") / med("half_quiet_recommend", "p50_ms")
    print(f"| ingest paced at {GOAL_RATE / 2:,.0f}/s, events/s; /recommend p50 / quiet; "
          f"visible p99 ms | {half:,.0f}; {ratio:.2f}x; "
          f"{med('half_visible_during_ingest', 'p99_ms'):.0f} |")  # fmt: skip
    save("live", {"runs": runs, "batch": BATCH, "duration_s": args.duration})


if __name__ == "__main__":
    main()
