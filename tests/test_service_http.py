"""A real `omni serve` (bentoml serve) subprocess answering HTTP, its parity with batch
scoring and with the logged MLflow models, its refusal to start without a snapshot, and
a built bento that runs without the MLflow server. Every request has a timeout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import tomllib
from pathlib import Path

import pandas as pd
import pytest
import requests
import yaml
from cli_helpers import omni
from compare_scores import assert_same_answers

from serving.process import free_port, wait_ready

pytestmark = pytest.mark.slow
TIMEOUT = 10


def _start(cmd: list[str], env: dict[str, str], url: str, log: Path) -> subprocess.Popen:
    out = open(log, "w")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_ready(url, proc)
    except RuntimeError:
        proc.kill()
        raise AssertionError(log.read_text()[-3000:]) from None
    return proc


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def server(trained_home, tmp_path_factory):
    """`omni serve` on a free port (it reuses the trained home's current snapshot)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env |= {"OMNI_HOME": str(trained_home), "OMNI_API_TOKEN": "s3cret"}
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    proc = _start(
        [sys.executable, "-m", "serving.cli", "serve", "--port", str(port)], env, url, log
    )
    yield url, log
    _stop(proc)
    # `omni serve` becomes the server: stopping it leaves nothing listening (it once left
    # an orphaned BentoML behind)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            requests.get(f"{url}/livez", timeout=1)
        except requests.RequestException:
            break
        time.sleep(0.5)
    else:
        raise AssertionError(f"{url} still answers after `omni serve` was stopped")


AUTH = {"Authorization": "Bearer s3cret"}


def test_served_over_http_with_token_health_and_metrics(server, snapshot):
    url, log = server
    customer = str(snapshot.features.index[3])
    body = {"customer_id": customer, "channel": "email", "k": 5}
    assert requests.post(f"{url}/recommend", json=body, timeout=TIMEOUT).status_code == 401
    r = requests.post(f"{url}/recommend", json=body, headers=AUTH, timeout=TIMEOUT)
    assert r.status_code == 200, r.text
    assert len(r.json()["items"]) == 5
    bad = requests.post(f"{url}/recommend", json={**body, "k": -1}, headers=AUTH, timeout=TIMEOUT)
    assert bad.status_code == 400 and "k" in bad.text
    assert requests.get(f"{url}/livez", timeout=TIMEOUT).status_code == 200
    metrics = requests.get(f"{url}/metrics", timeout=TIMEOUT)
    assert metrics.status_code == 200 and "bentoml_service_request" in metrics.text
    schema = requests.get(f"{url}/docs.json", timeout=TIMEOUT).json()
    assert {"/recommend", "/next_best_channel", "/churn_risk", "/score"} <= set(schema["paths"])
    # request logs name paths and statuses, never the customers
    assert "/recommend" in log.read_text() and customer not in log.read_text()


def _mlflow_predictions(home: Path, features: Path, ids: list[str], out: Path) -> None:
    """Call the logged @champion models through mlflow.pyfunc, in a fresh process (loading
    a pyfunc imports the code bundled with it)."""
    script = textwrap.dedent(
        f"""
        import mlflow, pandas as pd
        mlflow.set_tracking_uri("sqlite:///{home / "mlflow.db"}")
        ids = {ids!r}
        table = pd.read_parquet("{features}")
        table.index = table.index.astype(str)
        rows = table.loc[ids]
        churn = mlflow.pyfunc.load_model("models:/churn@champion").predict(rows)
        channel = mlflow.pyfunc.load_model("models:/next_best_channel@champion").predict(rows)
        recs = mlflow.pyfunc.load_model("models:/recommender@champion").predict(
            pd.DataFrame({{"customer_id": ids}})
        )
        churn.to_parquet("{out / "churn.parquet"}")
        channel.to_parquet("{out / "channel.parquet"}")
        recs.to_parquet("{out / "recs.parquet"}")
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    res = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300
    )
    assert res.returncode == 0, res.stderr[-3000:]


def test_recommend_answers_are_logged_with_their_ids(server, snapshot, trained_home):
    # issue 19: every /recommend answer has a recommendation_id, and its items reach the
    # recommendation log (written by the worker every few seconds)
    from serving.recommendation_log import read_log

    url, _ = server
    answers = []
    for i, channel in ((4, "web"), (5, None)):
        body = {"customer_id": str(snapshot.features.index[i]), "channel": channel, "k": 4}
        r = requests.post(f"{url}/recommend", json=body, headers=AUTH, timeout=TIMEOUT)
        assert r.status_code == 200, r.text
        answers.append(r.json())
    ids = [a["recommendation_id"] for a in answers]
    assert len(set(ids)) == 2
    deadline, rows = time.monotonic() + 30, pd.DataFrame()
    while time.monotonic() < deadline:
        rows = read_log(trained_home / "recommendations").to_pandas()
        rows = rows[rows["recommendation_id"].isin(ids)]
        if rows["recommendation_id"].nunique() == 2:
            break
        time.sleep(0.5)
    for answer in answers:
        logged = rows[rows["recommendation_id"] == answer["recommendation_id"]]
        assert logged["product_id"].tolist() == [it["product_id"] for it in answer["items"]]
        assert logged["reason"].tolist() == [it["reason"] for it in answer["items"]]
        assert logged["rank"].tolist() == list(range(1, len(answer["items"]) + 1))
        assert set(logged["customer_id"]) == {answer["customer_id"]}
        assert set(logged["cold_start"]) == {answer["cold_start"]}
        version = answer["model_versions"]["recommender"]
        assert set(logged["model_version"]) == {version}
    assert rows.loc[rows["recommendation_id"] == ids[1], "channel"].isna().all()


def test_score_equals_batch_scoring_and_the_logged_models(server, snapshot, trained_home, tmp_path):
    from serving.scoring import Scorer

    url, _ = server
    ids = [str(i) for i in snapshot.features.index[:40]]
    r = requests.post(f"{url}/score", json={"customer_ids": ids}, headers=AUTH, timeout=30)
    assert r.status_code == 200, r.text
    served = r.json()["results"]
    customers, recs = Scorer(snapshot).score_frames(ids, k=10)
    _mlflow_predictions(trained_home, snapshot.path / "features.parquet", ids, tmp_path)
    churn = pd.read_parquet(tmp_path / "churn.parquet")["churn_probability"].to_numpy()
    channel = pd.read_parquet(tmp_path / "channel.parquet")
    logged = pd.read_parquet(tmp_path / "recs.parquet")
    assert [s["customer_id"] for s in served] == ids
    channels = list(channel.columns)
    nbc = [{c["channel"]: c["probability"] for c in s["next_best_channel"]} for s in served]
    items = [
        {"customer_id": s["customer_id"], "rank": r + 1, **item}
        for s in served
        for r, item in enumerate(s["items"])
    ]
    served_frames = (
        pd.DataFrame(
            {
                "customer_id": ids,
                "churn_probability": [s["churn"]["probability"] for s in served],
                **{f"p_{c}": [p.get(c, 0.0) for p in nbc] for c in channels},
            }
        ),
        pd.DataFrame(items)[["customer_id", "rank", "product_id", "score", "reason"]],
    )
    logged_frames = (
        pd.DataFrame(
            {
                "customer_id": ids,
                "churn_probability": churn,
                **{f"p_{c}": channel[c].to_numpy() for c in channels},
            }
        ),
        logged,
    )
    batch_frames = (customers[served_frames[0].columns], recs)
    # issue 15: the service, batch scoring and the logged models within the scores' tolerance
    assert_same_answers(served_frames, batch_frames)
    assert_same_answers(served_frames, logged_frames)


def test_serve_refuses_to_start_without_models(tmp_path):
    res = omni("serve", "--port", str(free_port()), home=tmp_path / "empty", timeout=120)
    assert res.returncode == 2
    assert "no @champion" in res.stderr and "omni train" in res.stderr
    assert "Traceback" not in res.stderr


def test_built_bento_runs_without_mlflow(trained_home, tmp_path):
    bento_home = tmp_path / "bentoml"
    # issue 20: the system PATH only, so a uv installed by hand cannot help `bentoml build`
    bare = {"PATH": "/usr/bin:/bin", "BENTOML_HOME": str(bento_home)}
    built = omni("bento", home=trained_home, timeout=300, **bare)
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    assert "✓ bentoml build" in built.stdout
    tag = built.stdout.split("bentoml serve ")[-1].split()[0]
    env = {**os.environ, "BENTOML_HOME": str(bento_home), "OMNI_HOME": str(tmp_path / "none")}
    env |= {"MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}  # nothing listens there
    env.pop("OMNI_SNAPSHOT", None)
    latest = (trained_home / "online" / "LATEST").read_text().strip()
    manifest = json.loads((trained_home / "online" / latest / "manifest.json").read_text())
    # issue 19: the snapshot is a BentoML model (`bentoml models list` shows it, with its
    # version), the bento references it, and the bento pins the versions uv.lock pins
    listed = subprocess.run(
        [sys.executable, "-m", "bentoml", "models", "list", "-o", "json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    [model] = [m["tag"] for m in json.loads(listed.stdout)]
    assert model.startswith(f"omni_snapshot:{latest.lower()}-")
    info = yaml.safe_load(next(bento_home.glob("models/omni_snapshot/*/model.yaml")).read_text())
    assert info["metadata"]["snapshot"] == latest
    assert info["metadata"]["as_of"] == manifest["as_of"]
    bento_dir = bento_home / "bentos" / Path(*tag.split(":"))
    bento_yaml = yaml.safe_load((bento_dir / "bento.yaml").read_text())
    assert [m["tag"] for m in bento_yaml["models"]] == [model]
    assert not list(bento_dir.glob("src/bento_snapshot"))  # one way in: the model
    pinned: dict[str, set[str]] = {}
    for line in (bento_dir / "env" / "python" / "requirements.txt").read_text().splitlines():
        name, _, version = line.partition(";")[0].strip().partition("==")
        pinned.setdefault(name.lower(), set()).add(version)
    with open(Path(__file__).parents[1] / "uv.lock", "rb") as f:
        lock = tomllib.load(f)["package"]
    for name in ("numpy", "lightgbm", "implicit", "scikit-learn", "bentoml", "pandas"):
        assert pinned.get(name) == {p["version"] for p in lock if p["name"] == name}, name
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = _start(
        [sys.executable, "-m", "bentoml", "serve", tag, "--port", str(port)],
        env,
        url,
        tmp_path / "bento.log",
    )
    try:
        r = requests.post(f"{url}/ping", json={}, timeout=TIMEOUT)
        assert r.status_code == 200, r.text
        versions = {k: str(v["version"]) for k, v in manifest["models"].items()}
        assert r.json()["ok"] and r.json()["model_versions"] == versions
        features = trained_home / "online" / latest / "features.parquet"
        customer = str(pd.read_parquet(features, columns=[]).index[3])
        body = {"customer_id": customer, "channel": "email", "k": 5}
        r = requests.post(f"{url}/recommend", json=body, timeout=TIMEOUT)
        assert r.status_code == 200 and len(r.json()["items"]) == 5, r.text
    finally:
        _stop(proc)
