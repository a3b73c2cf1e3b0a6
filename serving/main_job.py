"""The main job: everything on the embedded default, printing where each result lives."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from features.console import console, fail, say, step, user_errors
from features.settings import Settings
from serving.process import free_port


def run_main_job(
    settings: Settings, customers: int, days: int, seed: int | None, keep_serving: bool = False
) -> None:
    """Synthetic data -> identities -> events store -> three models trained, tracked and
    registered -> online snapshot (features as of now) -> batch scores -> the service
    started and asked for one customer's recommendations."""
    from features.cli import run_synth
    from serving.online import SnapshotError
    from serving.serve_cli import build
    from training.customer_jobs import JobConfig
    from training.train_cli import JOBS, RECS_HORIZON_DAYS, run_jobs, run_recs

    seed = settings.seed if seed is None else seed
    console.print(f"[bold]omni run[/]  data home: {settings.home}")
    with user_errors():
        raw, result = run_synth(settings, customers, days, seed, end="2026-01-01", load=True)
        _report_identity_quality(raw, result)
        run_jobs(settings, JOBS, JobConfig(seed=seed))
        run_recs(settings, RECS_HORIZON_DAYS, seed)
        snapshot = build(settings)
        scores = _batch_scores(settings)
    try:
        port = free_port(3000)
        answer, curl = _sample_request(snapshot, scores, port, keep_serving)
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
        f"\nThe service answered on port {port}:\n  {curl}\n{answer}\n"
    )
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


def _sample_request(snapshot: Path, scores: Path, port: int, keep_serving: bool) -> tuple[str, str]:
    """Start `omni serve` on the snapshot, ask for one customer's list, return the answer
    and the curl that asks the same; stop the service unless ``keep_serving``."""
    import pandas as pd
    import requests

    from serving.process import wait_ready
    from serving.serve_cli import ONE_THREAD, SERVICE

    scored = pd.read_parquet(scores / "customers.parquet", columns=["customer_id", "cold_start"])
    warm = scored.loc[~scored["cold_start"], "customer_id"]
    customer = str(warm.iloc[0] if len(warm) else scored["customer_id"].iloc[0])
    body = {"customer_id": customer, "channel": "web", "k": 3}
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, **ONE_THREAD, "OMNI_SNAPSHOT": str(snapshot)}
    cmd = [sys.executable, "-m", "serving.bentoml_server", "serve", SERVICE, "--port", str(port)]
    with step(f"start the service on port {port}"):
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_ready(url, proc)
    headers = {}
    token = os.environ.get("OMNI_API_TOKEN")
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
        if keep_serving:
            console.print(f"serving on {url} (Ctrl-C stops it)")
            proc.wait()
        return answer, curl
    except requests.RequestException as exc:
        raise RuntimeError(str(exc)) from None
    except KeyboardInterrupt:
        return "", ""
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


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
