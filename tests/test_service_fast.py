"""The scoring service in the fast tier (issue 15): three tiny models fitted here in a few
seconds, written as an online snapshot without a registry, served by a real
`bentoml serve`, and its HTTP answers compared with batch scoring's (the same Scorer,
called in-process on the same snapshot) within the shared tolerance.

The slow tier serves the real models of `omni run` (tests/test_service_http.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests
from compare_scores import TOL, assert_same_list, close
from service_helpers import start, stop

from features.customer_features import build_customer_features
from features.labels import churn_labels, next_channel_labels
from features.settings import get_settings
from features.sources.synthetic import generate
from serving.bentoml_server import service_command
from serving.online import (
    LEGACY_ARRAYS,
    LIST_DEPTH,
    MODEL_NAMES,
    SERVING_DIR,
    file_hashes,
    load_snapshot,
    write_snapshot,
)
from serving.process import free_port
from serving.ranked_lists import serving_arrays
from serving.schemas import (
    ChannelResponse,
    ChurnResponse,
    PingResponse,
    RecommendResponse,
    ScoreResponse,
)
from serving.scoring import Scorer
from training.customer_models.classifiers import ChurnModel, NextChannelModel
from training.customer_models.labelled_sets import labelled_sets
from training.recs import Recommender

TIMEOUT = 10  # seconds per request: a stuck service fails the test instead of hanging it
FOREST = {"n_estimators": 20, "min_child_samples": 5, "n_jobs": 1}


def _tiny_models(events: pd.DataFrame, source) -> dict:
    """Churn, next best channel and the recommender fitted on a few hundred customers."""
    end = events["ts"].max().floor("D")
    cutoff = end - pd.Timedelta(days=60)
    models = {}
    for key, cls, label, column in (
        ("churn", ChurnModel, churn_labels, "churned"),
        ("next_best_channel", NextChannelModel, next_channel_labels, "channel"),
    ):
        X, y = labelled_sets(events, source.customers, [cutoff], label, column)[cutoff]
        models[key] = cls(params=dict(FOREST), random_state=0).fit(X, y)
    recommender = Recommender(
        horizon_days=14,
        n_train_cutoffs=2,
        ranker_params={"n_estimators": 20},
        factors=8,
        iterations=3,
        num_threads=1,
    )
    models["recommender"] = recommender.fit(
        events, source.customers, source.products, source.stores
    )
    return models


@pytest.fixture(scope="module")
def snapshot_path(tmp_path_factory):
    """A snapshot of tiny models fitted here, as of the recommender's cutoff."""
    source = generate(n_customers=300, days=150, seed=11)
    events = source.events.copy()
    events["customer_id"] = source.truth["event_person"]["person_id"].to_numpy()
    models = _tiny_models(events, source)
    as_of = models["recommender"].as_of_
    features = build_customer_features(events[events["ts"] < as_of], source.customers, as_of)
    sources = {k: {"name": n, "version": 1, "run_id": "in-test"} for k, n in MODEL_NAMES.items()}
    settings = get_settings({"OMNI_HOME": str(tmp_path_factory.mktemp("fast") / "home")})
    arrays = serving_arrays(models["recommender"], LIST_DEPTH)
    return write_snapshot(settings, as_of, features, models, sources, arrays, len(events))


@pytest.fixture(scope="module")
def server(snapshot_path, tmp_path_factory):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd, env = service_command(snapshot_path, port)
    logs = tmp_path_factory.mktemp("serve")
    proc = start(cmd, env, url, logs / "stdout.txt", logs / "stderr.txt")
    yield url
    stop(proc)


@pytest.fixture(scope="module")
def batch(snapshot_path) -> Scorer:
    """Batch scoring's Scorer on the same snapshot (candidates computed per request)."""
    return Scorer(load_snapshot(snapshot_path), num_threads=1, precompute_candidates=False)


def test_recommend_over_http_equals_batch_scoring(server, batch):
    ids = [str(i) for i in batch.snapshot.features.index[:25]]
    customers, recs = batch.score_frames(ids, k=5, channel="web")
    for row in customers.itertuples():
        body = {"customer_id": row.customer_id, "channel": "web", "k": 5}
        r = requests.post(f"{server}/recommend", json=body, timeout=TIMEOUT)
        assert r.status_code == 200, r.text
        answer = r.json()
        assert answer["cold_start"] == row.cold_start
        assert close(answer["churn"]["probability"], row.churn_probability, TOL)
        http_channels = {c["channel"]: c["probability"] for c in answer["next_best_channel"]}
        for channel, p in http_channels.items():
            assert close(p, getattr(row, f"p_{channel}"), TOL), channel
        expected = recs[recs["customer_id"] == row.customer_id].sort_values("rank")
        items = answer["items"]
        assert_same_list(
            [i["product_id"] for i in items],
            np.array([i["score"] for i in items]),
            expected["product_id"].to_numpy(),
            expected["score"].to_numpy(),
            what=row.customer_id,
        )


def test_unknown_customers_and_bad_requests(server, batch):
    r = requests.post(
        f"{server}/recommend", json={"customer_id": "nobody", "k": 3}, timeout=TIMEOUT
    )
    assert r.status_code == 200, r.text
    assert r.json()["cold_start"] is True and len(r.json()["items"]) == 3
    assert r.json()["churn"]["probability"] is None
    bad = requests.post(f"{server}/recommend", json={"customer_id": "x", "k": -1}, timeout=TIMEOUT)
    assert bad.status_code == 400 and "k" in bad.text
    ping = requests.post(f"{server}/ping", json={}, timeout=TIMEOUT)
    assert ping.status_code == 200
    assert ping.json()["model_versions"] == {k: "1" for k in MODEL_NAMES}


def test_answers_are_their_models_json_in_one_body_with_a_length(server, batch):
    # issue 21: endpoints send their answer whole (not chunked); the bytes are what the
    # answer's model gives for the same values
    known = str(batch.snapshot.features.index[0])
    calls = [
        ("/recommend", {"customer_id": known, "k": 3, "channel": "store"}, RecommendResponse),
        ("/recommend", {"customer_id": "nobody"}, RecommendResponse),
        ("/score", {"customer_ids": [known, "nobody"], "k": 2}, ScoreResponse),
        ("/churn_risk", {"customer_ids": [known, "nobody"]}, ChurnResponse),
        ("/next_best_channel", {"customer_id": known}, ChannelResponse),
        ("/ping", {}, PingResponse),
    ]
    for path, body, model in calls:
        r = requests.post(f"{server}{path}", json=body, timeout=TIMEOUT)
        assert r.status_code == 200, (path, r.text)
        assert r.headers["content-type"] == "application/json"
        assert r.headers["content-length"] == str(len(r.content))
        assert "transfer-encoding" not in r.headers
        assert model.model_validate_json(r.content).model_dump_json().encode() == r.content


def _served(url: str) -> dict[tuple, float]:
    """The service's own metrics: {(name, labels...): value} of the omni_* samples."""
    from prometheus_client.parser import text_string_to_metric_families

    text = requests.get(f"{url}/metrics", timeout=TIMEOUT).text
    return {
        (sample.name, *sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.startswith("omni_")
    }


def test_metrics_count_answers_items_by_reason_and_name_the_models(server, batch):
    # issue 19: answers by endpoint and cold/warm, items by reason, the served versions,
    # the snapshot's age
    before = _served(server)
    known = [str(i) for i in batch.snapshot.features.index[:2]]
    items, cold = [], 0
    for customer in [*known, "nobody"]:
        body = {"customer_id": customer, "k": 3}
        answer = requests.post(f"{server}/recommend", json=body, timeout=TIMEOUT).json()
        items += answer["items"]
        cold += answer["cold_start"]
    body = {"customer_ids": [*known, "nobody"]}
    assert requests.post(f"{server}/churn_risk", json=body, timeout=TIMEOUT).status_code == 200
    after = _served(server)

    def grew(*key) -> float:
        return after.get(key, 0) - before.get(key, 0)

    answers = "omni_answers_total"
    recommend, churn = ("endpoint", "/recommend"), ("endpoint", "/churn_risk")
    assert cold >= 1  # "nobody"
    assert grew(answers, ("customer", "cold"), recommend) == cold
    assert grew(answers, ("customer", "warm"), recommend) == 3 - cold
    assert grew(answers, ("customer", "cold"), churn) == 1
    assert grew(answers, ("customer", "warm"), churn) == 2
    served = {}
    for item in items:
        served[item["reason"]] = served.get(item["reason"], 0) + 1
    for reason, count in served.items():
        assert grew("omni_items_served_total", ("reason", reason)) == count
    for model in MODEL_NAMES:
        assert after[("omni_model_info", ("model", model), ("version", "1"))] == 1
    assert 0 < after[("omni_snapshot_age_seconds",)] < 3600


def test_the_docs_python_client_example_runs(server, batch, capsys):
    # issue 19: the docs' bentoml.SyncHTTPClient example, as written, against a real server
    text = (Path(__file__).resolve().parents[1] / "docs" / "service.md").read_text()
    block = text.split("<!-- client-example -->\n```python\n", 1)[1].split("```", 1)[0]
    customer = str(batch.snapshot.features.index[0])
    code = block.replace('"http://localhost:3000"', repr(server))
    code = code.replace('"C0000001"', repr(customer))
    exec(compile(code, "docs/service.md", "exec"), {})
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 + 2  # three items, the churn line, the bands
    assert lines[3].startswith("churn: ") and "cold start: " in lines[3]
    assert lines[4] == str({customer: lines[3].split()[1], "someone new": "unknown"})


@pytest.fixture(scope="module")
def churn_only(snapshot_path, tmp_path_factory):
    """A snapshot with the churn model alone (issue 16: `--models churn`, or data with
    one channel), written from the full snapshot's fitted models."""
    full = load_snapshot(snapshot_path)
    settings = get_settings({"OMNI_HOME": str(tmp_path_factory.mktemp("churn") / "home")})
    sources = {"churn": {"name": "churn", "version": 1, "run_id": "in-test"}}
    models = {"churn": full.models["churn"]}
    return write_snapshot(settings, full.as_of, full.features, models, sources)


def test_a_churn_only_snapshot_serves_churn_and_refuses_the_rest(churn_only, batch, tmp_path):
    # issue 16: serving works with whichever models exist; the others answer 404 naming them
    alone = Scorer(load_snapshot(churn_only), num_threads=1, ranked_lists=LIST_DEPTH)
    ids = [str(i) for i in batch.snapshot.features.index[:25]]
    customers, recs = alone.score_frames(ids)
    full, _ = batch.score_frames(ids)
    np.testing.assert_allclose(customers["churn_probability"], full["churn_probability"])
    assert recs.empty and "best_channel" not in customers and "cold_start" not in customers
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd, env = service_command(churn_only, port)
    proc = start(cmd, env, url, tmp_path / "stdout.txt", tmp_path / "stderr.txt")
    try:
        r = requests.post(f"{url}/churn_risk", json={"customer_ids": ids[:3]}, timeout=TIMEOUT)
        assert r.status_code == 200, r.text
        got = [c["churn"]["probability"] for c in r.json()["results"]]
        np.testing.assert_allclose(got, full["churn_probability"][:3], atol=TOL)
        for path, body, model in (
            ("recommend", {"customer_id": ids[0]}, "recommender"),
            ("score", {"customer_ids": ids[:2]}, "recommender"),
            ("next_best_channel", {"customer_id": ids[0]}, "next_best_channel"),
        ):
            r = requests.post(f"{url}/{path}", json=body, timeout=TIMEOUT)
            assert r.status_code == 404, (path, r.text)
            assert r.json()["detail"].startswith(f"{model}: the served snapshot has no"), r.text
    finally:
        stop(proc)


def test_endpoints_are_bound_once_per_worker():
    # issue 21: BentoML binds an endpoint anew on every request (inspect.signature and a
    # wrapper, ~17 µs for /recommend); a worker's instance keeps the first binding
    from serving.service import Personalization, bind_endpoints

    cls = Personalization.inner
    fresh, bound = cls.__new__(cls), cls.__new__(cls)
    assert fresh.recommend is not fresh.recommend  # what BentoML does per request
    bind_endpoints(bound, Personalization.apis)
    for name in Personalization.apis:
        endpoint = getattr(bound, name)
        assert endpoint is getattr(bound, name) and endpoint.local is endpoint
        assert endpoint.func is getattr(fresh, name).func  # the same function, bound once


def test_serving_arrays_are_mapped_read_only_and_a_npz_snapshot_reads_the_same(
    snapshot_path, tmp_path
):
    # stop 39: the precomputed lists and candidates are memory-mapped from serving/*.npy
    # (pages of a file that workers share), not read into each worker; a snapshot built
    # before holds them in one serving.npz, which is still read, with the same answers
    mapped = load_snapshot(snapshot_path).arrays
    assert mapped and "lists_item_0" in mapped and "personal_item" in mapped
    for name, array in mapped.items():
        assert type(array) is np.ndarray and isinstance(array.base, np.memmap), name
        assert not array.flags.writeable, name
    legacy = tmp_path / snapshot_path.name
    shutil.copytree(snapshot_path, legacy)
    shutil.rmtree(legacy / SERVING_DIR)
    np.savez(legacy / LEGACY_ARRAYS, **mapped)
    manifest = json.loads((legacy / "manifest.json").read_text())
    manifest["files"] = file_hashes(legacy)
    (legacy / "manifest.json").write_text(json.dumps(manifest))
    read = load_snapshot(legacy).arrays
    assert sorted(read) == sorted(mapped)
    assert all(np.array_equal(read[n], mapped[n], equal_nan=True) for n in mapped)
    assert not any(isinstance(a.base, np.memmap) for a in read.values())
    # stop 45: the recommender's per-customer state is mapped too; a snapshot without
    # those arrays (built before) keeps the unpickled state, with the same answers
    unmapped = tmp_path / "unmapped" / snapshot_path.name
    shutil.copytree(snapshot_path, unmapped)
    for pattern in ("state_*.npy", "features_*.npy"):
        for file in (unmapped / SERVING_DIR).glob(pattern):
            file.unlink()
    manifest = json.loads((unmapped / "manifest.json").read_text())
    manifest["files"] = file_hashes(unmapped)
    (unmapped / "manifest.json").write_text(json.dumps(manifest))
    assert "state_bought_keys" in mapped and "state_user_factors" in mapped
    ids = [str(i) for i in load_snapshot(snapshot_path).features.index[:40]]
    ids += ["never-seen"]
    scorers = [
        Scorer(load_snapshot(p), num_threads=1, ranked_lists=LIST_DEPTH)
        for p in (snapshot_path, legacy, unmapped)
    ]
    state = scorers[0].recommender.state_
    for part in (state.bought.keys, state.active, state.user_factors, state.session.keys):
        assert _on_mapped_pages(part) and not part.flags.writeable
    assert scorers[0].snapshot.models["recommender"] is scorers[0].recommender
    # the feature table too: its numeric columns on mapped pages, equal to the Parquet file
    read = pd.read_parquet(snapshot_path / "features.parquet")
    for path in (snapshot_path, unmapped):
        pd.testing.assert_frame_equal(load_snapshot(path).features, read)
    first = read.columns[0]
    assert _on_mapped_pages(load_snapshot(snapshot_path).features[first].to_numpy())
    assert not _on_mapped_pages(load_snapshot(unmapped).features[first].to_numpy())
    assert not _on_mapped_pages(scorers[2].recommender.state_.bought.keys)  # its own copy
    answers = [scorer.recommend(ids, k=10) for scorer in scorers]
    for other in answers[1:]:
        for part in ("pos", "item", "score", "reason", "cold_start"):
            assert np.array_equal(getattr(answers[0], part), getattr(other, part)), part


def _on_mapped_pages(array: np.ndarray) -> bool:
    """Whether ``array`` is a view of a memory-mapped file (through any chain of views)."""
    while array is not None and not isinstance(array, np.memmap):
        array = getattr(array, "base", None)  # an Arrow buffer ends the chain
    return array is not None
