"""Compiled forests (lleaves): the same numbers as LightGBM's own predict, for the models
batch scoring compiles, and the snapshot that carries them.

Two implementations agree to ``CLOSE`` (relative 1e-12), not bit for bit: the sigmoid /
softmax link uses numpy's ``exp``, which numpy picks by CPU (a SIMD one on AVX-512), so the
last bit differs from LightGBM's own on some machines (issue 20). One code path run twice
is still compared exactly."""

from __future__ import annotations

import dataclasses

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from training.compiled_forest import BLOCK_TREES, compile_forest
from training.customer_models.classifiers import lightgbm_link

CLOSE = {"rtol": 1e-12, "atol": 1e-12}


def _data(rows: int = 3000, features: int = 12, seed: int = 0):
    """Float32 features with NaNs and repeated values (ties at split thresholds)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, features)).astype(np.float32)
    X[:, :3] = np.round(X[:, :3], 1)
    X[rng.random(X.shape) < 0.05] = np.nan
    signal = np.nan_to_num(X[:, 0]) + np.nan_to_num(X[:, 1]) * np.nan_to_num(X[:, 2])
    return X, signal + rng.normal(scale=0.5, size=rows)


def _booster(objective: str, y: np.ndarray, X: np.ndarray, rounds: int, **extra) -> lgb.Booster:
    params = {"objective": objective, "num_leaves": 15, "verbose": -1, "seed": 0, **extra}
    return lgb.train(params, lgb.Dataset(X, y), rounds)


@pytest.fixture(scope="module")
def multiclass():
    X, signal = _data()
    y = np.digitize(signal, np.quantile(signal, [0.2, 0.4, 0.6, 0.8]))
    booster = _booster("multiclass", y, X, 20, num_class=5)
    assert booster.num_trees() > 2 * BLOCK_TREES  # several cache blocks per class sum
    return booster, _data(seed=1)[0]


def test_multiclass_raw_scores_and_probabilities_equal_lightgbm(multiclass, tmp_path):
    booster, X = multiclass
    forest = compile_forest(booster, tmp_path)
    raw = forest.predict_raw(X, num_threads=2)
    np.testing.assert_allclose(raw, booster.predict(X, raw_score=True), **CLOSE)
    np.testing.assert_allclose(lightgbm_link(raw), booster.predict(X), **CLOSE)
    np.testing.assert_array_equal(forest.predict_raw(X[:1], num_threads=1), raw[:1])


def test_binary_and_ranker_scores_equal_lightgbm(tmp_path):
    X, signal = _data()
    binary = _booster("binary", (signal > 0).astype(int), X, 80)
    forest = compile_forest(binary, tmp_path)
    np.testing.assert_allclose(forest.predict_raw(X), binary.predict(X, raw_score=True), **CLOSE)
    np.testing.assert_allclose(lightgbm_link(forest.predict_raw(X)), binary.predict(X), **CLOSE)
    relevance = np.digitize(signal, np.quantile(signal, [0.5, 0.8, 0.95]))
    ranker = lgb.train(
        {"objective": "lambdarank", "num_leaves": 15, "verbose": -1, "seed": 0},
        lgb.Dataset(X, relevance, group=[50] * (len(X) // 50)),
        60,
    )
    forest = compile_forest(ranker, tmp_path)
    np.testing.assert_allclose(forest.predict_raw(X, num_threads=2), ranker.predict(X), **CLOSE)


def test_compiled_code_is_cached_per_model(multiclass, tmp_path):
    booster, X = multiclass
    compile_forest(booster, tmp_path)
    assert len(list(tmp_path.glob("forest-*.o"))) == 1
    assert not [p for p in tmp_path.iterdir() if p.is_dir()]  # no staging left behind
    again = compile_forest(booster, tmp_path, build=False)  # loaded, not compiled
    np.testing.assert_allclose(again.predict_raw(X), booster.predict(X, raw_score=True), **CLOSE)
    other = _booster("multiclass", np.arange(len(X)) % 3, X, 3, num_class=3)
    assert compile_forest(other, tmp_path, build=False) is None


@pytest.mark.slow
def test_scorer_with_compiled_forests_equals_lightgbm(snapshot, tmp_path):
    """Batch scoring of every customer of the trained home: the same tables (to ``CLOSE``)
    with the snapshot's forests compiled and without."""
    from serving.online import FORESTS, forest_booster
    from serving.scoring import Scorer

    forests = {
        key: compile_forest(forest_booster(snapshot.models, key), tmp_path) for key in FORESTS
    }
    compiled = dataclasses.replace(snapshot, forests=forests)
    ids = list(snapshot.features.index.astype(str))
    plain = Scorer(snapshot, num_threads=2, precompute_candidates=False).score_frames(ids)
    fast = Scorer(compiled, num_threads=2, precompute_candidates=False).score_frames(ids)
    for theirs, mine in zip(plain, fast, strict=True):
        pd.testing.assert_frame_equal(mine, theirs, check_exact=False, **CLOSE)


@pytest.mark.slow
def test_snapshot_build_compiles_and_loads_forests(trained_home, tmp_path):
    import shutil

    from cli_helpers import omni

    from features.settings import get_settings
    from serving.online import FORESTS, latest_snapshot, load_snapshot

    home = tmp_path / "home"
    shutil.copytree(trained_home, home, ignore=shutil.ignore_patterns("online", "scores*"))
    res = omni(
        "snapshot",
        "build",
        "--no-serving",
        "--no-refresh-recommender",
        "--compile-forests",
        home=home,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "compiled the ranker" in res.stdout
    snap = load_snapshot(latest_snapshot(get_settings({"OMNI_HOME": str(home)})))
    assert set(snap.forests) == set(FORESTS) == set(snap.manifest["forests"])
    assert len(list((snap.path / "forests").glob("forest-*.o"))) == len(FORESTS)
