"""`omni run`, the main job: everything on the embedded default, printing where each result
lives."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Annotated

import typer

from features.console import console, fail, say, step, user_errors
from features.settings import Settings
from serving.process import free_port

SERVICE_LOG = "service.log"
"""The service's output when the main job starts it, in the data home (overwritten each run):
what to read when it does not come up."""
PORT_TAKEN = "Address already in use"
"""What the service logs when its port is taken as it binds it."""


def run(
    ctx: typer.Context,
    customers: Annotated[int, typer.Option(min=200, help="Synthetic customers.")] = 5000,
    days: Annotated[
        int, typer.Option(min=330, help="Days of history (training needs 330+).")
    ] = 365,
    seed: Annotated[
        int | None, typer.Option(help="Random seed (default: OMNI_SEED or 42).")
    ] = None,
    keep_serving: Annotated[
        bool, typer.Option(help="Leave the service running at the end (Ctrl-C stops it).")
    ] = False,
) -> None:
    """The main job on the embedded default: synthetic data -> identities -> events store
    -> churn, next-best-channel and recommendation models trained, tracked in MLflow and
    registered -> online snapshot -> batch scores -> the service started and asked for a
    sample customer's recommendations."""
    run_main_job(ctx.obj, customers=customers, days=days, seed=seed, keep_serving=keep_serving)


def run_main_job(
    settings: Settings, customers: int, days: int, seed: int | None, keep_serving: bool = False
) -> None:
    """Synthetic data -> identities -> events store -> three models trained, tracked and
    registered -> online snapshot (features as of now) -> batch scores -> the service
    started and asked for one customer's recommendations."""
    from serving.cli.data import synth_and_load
    from serving.cli.snapshot import build_and_report
    from serving.cli.train import train_and_report, train_recs_and_report
    from serving.collector import free_between_steps
    from serving.online import SnapshotError
    from training.customer_models.job import JobConfig
    from training.job_names import CUSTOMER_JOBS, RECS_HORIZON_DAYS

    seed = settings.seed if seed is None else seed
    console.print(f"[bold]omni run[/]  data home: {settings.home}")
    with user_errors():
        raw, result = synth_and_load(settings, customers, days, seed, end="2026-01-01")
        _report_identity_quality(raw, result)
        del result  # it holds the loaded events: not through the steps that follow
        free_between_steps()
        train_and_report(settings, CUSTOMER_JOBS, JobConfig(seed=seed))
        free_between_steps()
        train_recs_and_report(settings, RECS_HORIZON_DAYS, seed)
        free_between_steps()
        snapshot = build_and_report(settings)
        free_between_steps()
        scores = _batch_scores(settings)
    try:
        port, answer, curl, demo = _sample_request(settings, snapshot, scores, keep_serving)
    except (SnapshotError, RuntimeError) as exc:
        raise fail(f"the service did not answer: {exc}") from None
    console.print(
        f"\n[bold]Done.[/] Everything is under {settings.home}:\n"
        f"  events store:      {settings.store_dir}\n"
        f"  MLflow (runs, registered models): {settings.tracking_uri}\n"
        f"    browse: mlflow ui --backend-store-uri {settings.tracking_uri}"
        "   list: omni models list\n"
        f"  online snapshot (features + models as of now): {snapshot}\n"
        f"  batch scores (every customer): {scores}\n"
        f"  the service's log: {settings.home / SERVICE_LOG}\n"
        f"\nThe service answered on port {port}:\n  {curl}\n{answer}\n"
    )
    if demo:
        console.print("[bold]Live events[/] (POST /events, then the same customer's list):")
        console.print("\n".join(f"  {line}" for line in demo.lines()))
    if not keep_serving:
        console.print("Start it again with: [bold]omni serve[/] (port 3000; --help for options)")


def _batch_scores(settings: Settings) -> Path:
    from serving.batch import run_batch

    out = settings.home / "scores" / "latest"
    with step("batch scoring (omni score)"):
        result = run_batch(settings, out, say=say)
    say(
        f"{result.customers:,} customers scored, {result.cold_start:,} cold start, "
        f"{result.seconds['score']:.1f} s"
    )
    return out


def _sample_request(settings: Settings, snapshot: Path, scores: Path, keep_serving: bool):
    """Start `omni serve` on the snapshot, ask for one customer's list, then run the live
    demo (:mod:`serving.live.demo`); return the port, the answer, the curl that asks the
    same and the demo's result; stop the service unless ``keep_serving``."""
    import pandas as pd
    import requests

    from features.store.events import read_table
    from serving.live.demo import run_demo

    token = settings.api_token
    scored = pd.read_parquet(scores / "customers.parquet", columns=["customer_id", "cold_start"])
    warm = scored.loc[~scored["cold_start"], "customer_id"]
    customer = str(warm.iloc[0] if len(warm) else scored["customer_id"].iloc[0])
    body = {"customer_id": customer, "channel": "web", "k": 3}
    with step("start the service"):
        proc, port = _start_service(snapshot, settings.home / SERVICE_LOG)
    url = f"http://127.0.0.1:{port}"
    headers = {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        r = requests.post(f"{url}/recommend", json=body, headers=headers, timeout=10)
        r.raise_for_status()
        answer = json.dumps(r.json(), indent=2)
        auth = " -H 'Authorization: Bearer $OMNI_API_TOKEN'" if token else ""
        curl = (
            f"curl -s {url}/recommend -H 'content-type: application/json'{auth} "
            f"-d '{json.dumps(body)}'"
        )
        with step("live demo: events in, the changed answer out"), requests.Session() as session:
            session.headers.update(headers)
            stores = read_table(settings.store_dir, "stores")["store_id"]
            store = str(stores.iloc[0]) if len(stores) else None
            products = read_table(settings.store_dir, "products")
            demo = run_demo(session, url, customer, products, store)
        if keep_serving:
            console.print(f"serving on {url} (Ctrl-C stops it)")
            proc.wait()
        return port, answer, curl, demo
    except requests.RequestException as exc:
        raise RuntimeError(str(exc)) from None
    except KeyboardInterrupt:
        return port, "", "", None
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def _start_service(snapshot: Path, log: Path) -> tuple[subprocess.Popen, int]:
    """The service on ``snapshot``, ready, and its port: 3000 when free, else one the
    system picks; its output in ``log``. When another process takes the port between the
    check and the service's bind, the service starts once more on a port the system picks."""
    port = free_port(3000)
    try:
        return _started(snapshot, port, log), port
    except RuntimeError:
        if PORT_TAKEN not in log.read_text(errors="replace"):
            raise
    say(f"port {port} was taken as the service started; starting it on another")
    port = free_port()
    return _started(snapshot, port, log), port


def _started(snapshot: Path, port: int, log: Path) -> subprocess.Popen:
    """The service on ``snapshot`` at ``port``, ready; RuntimeError quoting ``log`` if it
    does not come up."""
    from serving.bentoml_server import service_command
    from serving.process import wait_ready

    cmd, env = service_command(snapshot, port)
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    wait_ready(f"http://127.0.0.1:{port}", proc, log=log)
    return proc


def _report_identity_quality(raw, result) -> None:
    """Compare resolved customers with the generator's true person per event."""
    import pandas as pd

    from features.store.identity import merge_quality

    truth = pd.read_parquet(raw / "truth" / "event_person.parquet")["person_id"]
    resolved = result.load.data.events["customer_id"]  # same rows, same order as the raw file
    q = merge_quality(resolved, truth)
    say(
        f"identity resolution vs ground truth: pairwise precision {q.precision:.3f}, "
        f"recall {q.recall:.3f}"
    )
