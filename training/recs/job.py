"""The recommendation training job: fit, evaluate against baselines, log, gate, register.

Temporal split (all UTC midnights, h = ``horizon_days``, default 14):

- test cutoff T = the first midnight after the last event - h (or ``as_of``); the test
  window [T, T + h) is only ever read by the final evaluation;
- validation cutoff V = T - h: ranker early stopping on labels from [V, T);
- training cutoffs V - h - i * step: ranker labels from [cutoff, cutoff + h);
- every model and baseline is fitted on events before T (ALS and popularity tables as
  of T; the ranker's training cutoffs each with ALS fitted on events before them).

The run logs params, the model's and every baseline's metrics (``baseline_<name>_...``),
the same at k = 1..20 as step metrics (``test_ndcg_at_k`` at step k), metric-by-k and
feature-importance plots, the recommender as a pyfunc model and its ranker in MLflow's
``lightgbm`` flavour (``ranker_booster``); the registered model ``recommender`` becomes
@champion only if its test NDCG@10 beats the champion's on the same holdout.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import pandas as pd

from features.cutoffs import to_utc
from features.settings import Settings
from training.job_names import RECS_HORIZON_DAYS
from training.recs.als_search import DEFAULT_CANDIDATES, SEARCHABLE, ALSSearch, search_als
from training.recs.base import BaseRecommender
from training.recs.baselines import ALSRecommender, BuyAgainRecommender, PopularityRecommender
from training.recs.data import History
from training.recs.evaluate import Evaluation, Holdout, comparison_table, evaluate
from training.recs.model import Recommender, as_history, default_cutoff
from training.splits import TemporalSplit, test_window

if TYPE_CHECKING:
    from matplotlib.figure import Figure

REGISTERED_NAME = "recommender"
JOB_NAME = "recommender"
GATE_METRIC = "test_ndcg_at_10"
K = 10

Say = Callable[[str], None]


@dataclass
class RecsResult:
    """The fitted recommender, its evaluation against the baselines, and what was logged."""

    model: Recommender
    baselines: dict[str, BaseRecommender]
    evaluations: dict[str, Evaluation]
    split: TemporalSplit
    metrics: dict[str, float]  # test_<metric>_at_10 for the model
    baseline_metrics: dict[str, dict[str, float]]
    params: dict[str, Any]
    seconds: dict[str, float] = field(default_factory=dict)
    run_id: str | None = None
    decision: Any = None  # training.model_registry.GateDecision
    als_search: ALSSearch | None = None

    @property
    def table(self) -> pd.DataFrame:
        """One row per recommender: NDCG, MAP, recall, precision @10, hit rate, coverage,
        new-item NDCG / recall."""
        return comparison_table(list(self.evaluations.values()))


def _test_metrics(e: Evaluation) -> dict[str, float]:
    return {f"test_{k}": v for k, v in e.flat().items()}


def fit_and_evaluate(
    events: pd.DataFrame | History,
    customers: pd.DataFrame | None = None,
    products: pd.DataFrame | None = None,
    stores: pd.DataFrame | None = None,
    horizon_days: int = RECS_HORIZON_DAYS,
    as_of: pd.Timestamp | str | None = None,
    params: Mapping[str, Any] | None = None,
    seed: int = 42,
    say: Say = lambda _m: None,
    als_candidates: Sequence[Mapping[str, Any]] | None = DEFAULT_CANDIDATES,
) -> RecsResult:
    """Fit the recommender and the baselines on events before the test cutoff and
    evaluate all of them on the window after it (no MLflow).

    ``als_candidates``: ALS settings tried on the validation window before the fit (see
    :mod:`training.recs.als_search`); the winner is used by the model and by the
    ``implicit_als`` baseline. None: no search, the given ``params`` as they are."""
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    history = (
        events
        if isinstance(events, History)
        else History.from_frames(events, customers, products, stores)
    )
    seconds["encode"] = time.perf_counter() - t0
    if as_of is None:
        test = default_cutoff(history) - pd.Timedelta(days=horizon_days)
    else:
        test = to_utc(as_of)
    holdout = Holdout.build(history, test, horizon_days)
    model_params = {"horizon_days": horizon_days, **dict(params or {}), "random_state": seed}
    search = None
    if als_candidates is not None:
        t0 = time.perf_counter()
        before = Recommender(**model_params)
        valid = before.cutoffs(test)[1]
        search = search_als(history, valid, horizon_days, before.get_params(), als_candidates)
        model_params |= search.best
        seconds["als_search"] = time.perf_counter() - t0
        say(f"ALS search on the validation window {valid:%Y-%m-%d}: {search.summary()}")
    model = Recommender(**model_params)
    common = {"lookback_days": model.lookback_days, "popularity_days": model.popularity_days}
    als_names = (*(n for n in SEARCHABLE if n != "event_weights"), "num_threads")
    als = {k: v for k, v in model.get_params().items() if k in als_names}
    baselines: dict[str, BaseRecommender] = {
        "popularity": PopularityRecommender(**common),
        "buy_again_popularity": BuyAgainRecommender(**common),
        "implicit_als": ALSRecommender(
            **common, event_weights=model.event_weights, random_state=seed, **als
        ),
    }
    t0 = time.perf_counter()
    model.fit(history, as_of=test)
    seconds["fit_model"] = time.perf_counter() - t0
    trees = model.best_iteration_
    say(f"recommender fitted in {seconds['fit_model']:.1f} s (ranker: {trees} trees)")
    evaluations = {}
    for name, base in baselines.items():
        t0 = time.perf_counter()
        base.fit(history, as_of=test)
        seconds[f"fit_{name}"] = time.perf_counter() - t0
        evaluations[name] = evaluate(base, holdout, k=K)
    t0 = time.perf_counter()
    evaluations = {"model": evaluate(model, holdout, k=K), **evaluations}
    seconds["evaluate_model"] = time.perf_counter() - t0
    split = TemporalSplit(
        train=model.train_cutoffs_, valid=model.valid_cutoff_, test=test, horizon_days=horizon_days
    )
    metrics = _test_metrics(evaluations["model"])
    metrics |= {
        "valid_ndcg_at_10": model.valid_ndcg_,
        "best_iteration": float(model.best_iteration_),
        "test_customers": float(evaluations["model"].n_customers),
    }
    for role, stats in model.fit_stats_.items():
        metrics[f"candidate_recall_{role.split('_')[0]}"] = stats["candidate_recall"]
    return RecsResult(
        model=model,
        baselines=baselines,
        evaluations=evaluations,
        split=split,
        metrics=metrics,
        baseline_metrics={n: _test_metrics(e) for n, e in evaluations.items() if n != "model"},
        params=model.get_params(),
        seconds=seconds,
        als_search=search,
    )


def metric_by_k_figure(evaluations: Mapping[str, Evaluation]) -> Figure:
    """NDCG, recall, precision and hit rate against k (1..20), one line per recommender."""
    from training.tracking import new_figure

    fig, axes = new_figure(2, 2, figsize=(10, 7), layout="constrained")
    for ax, metric in zip(axes.ravel(), ("ndcg", "recall", "precision", "hit_rate"), strict=True):
        for name, e in evaluations.items():
            ax.plot(e.by_k["k"], e.by_k[metric], marker="o", markersize=3, label=name)
        ax.set_xlabel("k")
        ax.set_title(f"{metric}@k")
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    return fig


def importance_figure(importance: pd.Series) -> Figure:
    """Horizontal bars of the ranker's gain per feature."""
    from training.tracking import new_figure

    imp = importance.sort_values()
    fig, ax = new_figure(figsize=(7, 0.25 * len(imp) + 1), layout="constrained")
    ax.barh(imp.index, imp.to_numpy())
    ax.set_xlabel("total gain")
    ax.set_title("ranker feature importance")
    return fig


def log_and_register(
    settings: Settings,
    result: RecsResult,
    events: pd.DataFrame | None,
    register: bool = True,
) -> RecsResult:
    """Log the run (params, metrics, plots, pyfunc model) and register through the gate."""
    from training import tracking
    from training.model_io import log_lightgbm_booster, log_python_model
    from training.recs.pyfunc import RecommenderPyfunc

    model = result.model
    title = tracking.run_name(REGISTERED_NAME, result.split)
    with tracking.tracked_run(settings, JOB_NAME, params=result.params, run_name=title) as run:
        split = result.split.as_params()
        fingerprint = "n/a"
        if events is not None:
            fingerprint = tracking.log_dataset(events, source=settings.events_dir, cutoffs=split)
        tracking.log_lightgbm_params(model.ranker_)
        tracking.log_evaluation(result.metrics, result.baseline_metrics)
        for owner, evaluation in result.evaluations.items():  # test_ndcg_at_k at steps 1..20
            prefix = "test_" if owner == "model" else f"baseline_{owner}_test_"
            tracking.log_metric_steps(evaluation.by_k, "k", prefix=prefix, suffix="_at_k")
        tracking.log_metrics({f"seconds_{k}": v for k, v in result.seconds.items()})
        tracking.log_features(model.features_, result.split.as_params())
        tracking.log_figure(metric_by_k_figure(result.evaluations), "plots/metric_by_k.png")
        importance = model.feature_importance()
        tracking.log_figure(importance_figure(importance), "plots/feature_importance.png")
        tracking.log_json(importance.round(3).to_dict(), "feature_importance.json")
        tracking.log_json(
            {n: e.by_k.to_dict(orient="list") for n, e in result.evaluations.items()},
            "eval/metric_by_k.json",
        )
        tracking.log_json(result.table.round(5).to_dict(orient="index"), "eval/comparison.json")
        if result.als_search is not None:
            tracking.log_json(result.als_search.as_json(), "tuning/als_search.json")
            for step, row in enumerate(result.als_search.rows):
                scores = {k: v for k, v in row.items() if k.startswith("valid_")}
                tracking.log_metrics(scores, prefix="als_search_", step=step)
        wrapper = RecommenderPyfunc(model)
        example = _input_example(model)
        info = log_python_model(
            wrapper,
            artifacts=None,
            signature_df=example,
            input_example=example,
            output_example=wrapper.predict(None, example),
        )
        log_lightgbm_booster(model.ranker_.booster_, "ranker_booster", model.features_)
        result.run_id = run.info.run_id
        if register:
            from training.model_registry import register_with_gate

            holdout = {**result.split.as_params(), "data_fingerprint": fingerprint}
            result.decision = register_with_gate(
                settings,
                REGISTERED_NAME,
                run.info.run_id,
                info.model_uri,
                GATE_METRIC,
                result.metrics[GATE_METRIC],
                holdout=holdout,
            )
    return result


def _input_example(model: Recommender) -> pd.DataFrame:
    """Two known customers, one with request context, as pyfunc input (the missing values
    make store_id and channel optional columns of the signature)."""
    state, cat = model.state_, model.catalogue_
    active = cat.customer_ids[state.active][:2].tolist()
    while len(active) < 2:
        active.append("new-customer")
    store = cat.store_ids[0] if len(cat.store_ids) else None
    return pd.DataFrame(
        {
            "customer_id": active,
            "store_id": pd.Series([store, None], dtype=object),
            "channel": pd.Series([None, "store"], dtype=object),
        }
    )


def train_recommender(
    settings: Settings,
    events: pd.DataFrame,
    customers: pd.DataFrame | None = None,
    products: pd.DataFrame | None = None,
    stores: pd.DataFrame | None = None,
    horizon_days: int = RECS_HORIZON_DAYS,
    test_cutoff: pd.Timestamp | None = None,
    as_of: pd.Timestamp | None = None,
    params: Mapping[str, Any] | None = None,
    register: bool = True,
    say: Say = lambda _m: None,
) -> RecsResult:
    """Fit and evaluate the recommender and its baselines on the test window starting at
    ``test_cutoff`` (default ``as_of`` - horizon; see the module docstring for the split),
    move the model to ``as_of`` (default: after the last event; events from it on are not
    read), log the run to MLflow and register ``recommender`` through the gate."""
    history = as_history(events, customers, products, stores)
    default_cutoff(history)  # a clear error when there is nothing to fit on
    test, end = test_window(history.last_ts, horizon_days, test_cutoff, as_of)
    result = fit_and_evaluate(
        history,
        horizon_days=horizon_days,
        as_of=test,
        params=params,
        seed=settings.seed,
        say=say,
    )
    if end != test:
        t0 = time.perf_counter()
        result.model.refresh(history, as_of=end)
        result.seconds["move"] = time.perf_counter() - t0
        say(f"moved the recommender to {end:%Y-%m-%d} ({result.seconds['move']:.1f} s)")
    result.split = replace(result.split, as_of=end)
    t0 = time.perf_counter()
    log_and_register(settings, result, events, register=register)
    result.seconds["log"] = time.perf_counter() - t0
    return result
