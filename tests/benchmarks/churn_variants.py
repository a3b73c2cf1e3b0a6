"""Churn model variants on one data home (issue 16: why early stopping kept 7 trees on
Complete Journey): LightGBM settings, early-stopping metric and training cutoffs, each
fitted on the same labelled sets; prints trees kept, the raw booster's validation AP and
AUC (what a choice may be made on) and the test AP and AUC (reported, never chosen on).

    OMNI_HOME=... python tests/benchmarks/churn_variants.py --horizon 60 --lookback 90
"""

from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

SHARED = {  # the forest defaults the channel model keeps (and churn had before issue 16)
    "n_estimators": 600,
    "learning_rate": 0.05,
    "num_leaves": 31,
    "min_child_samples": 40,
    "reg_lambda": 1.0,
}
SLOW = {"learning_rate": 0.02, "n_estimators": 1500}
REGULARISED = {"num_leaves": 15, "min_child_samples": 100, "reg_lambda": 5.0}
SMALL = {"num_leaves": 7, "min_child_samples": 200, "reg_lambda": 10.0}
VARIANTS: dict[str, dict] = {  # each a full set of the parameters above, over SHARED
    "shared_defaults": {"params": SHARED},
    "shared_es_logloss": {"params": SHARED, "early_stopping_metric": "binary_logloss"},
    "lr_0.02": {"params": {**SHARED, **SLOW}},
    "regularised": {"params": {**SHARED, **REGULARISED}},
    "lr_0.02_regularised": {"params": {**SHARED, **SLOW, **REGULARISED}},
    "small_trees": {"params": {**SHARED, **SLOW, **SMALL}},
    "small_trees_es_logloss": {
        "params": {**SHARED, **SLOW, **SMALL},
        "early_stopping_metric": "binary_logloss",
    },
    "small_trees_no_bgnbd": {"params": {**SHARED, **SLOW, **SMALL}, "bgnbd_horizon_days": None},
}


def main() -> None:
    import numpy as np
    from sklearn.metrics import average_precision_score, roc_auc_score

    from features.labels import churn_labels
    from features.settings import get_settings
    from training.customer_models.classifiers import ChurnModel
    from training.customer_models.labelled_sets import labelled_sets, stack
    from training.runner import load_training_data
    from training.splits import temporal_split

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--horizon", type=int, default=60)
    parser.add_argument("--lookback", type=int, default=90)
    parser.add_argument("--cutoffs", type=int, nargs="+", default=[4])
    parser.add_argument("--step", type=int, default=30)
    parser.add_argument("--seeds", type=int, nargs="+", default=[42])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args()
    events, customers = load_training_data(get_settings())
    label = partial(churn_labels, lookback_days=args.lookback, horizon_days=args.horizon)
    print("| cutoffs | variant | seed | trees | valid AP | valid AUC | test AP | test AUC |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for n_train in args.cutoffs:
        split = temporal_split(
            events["ts"].min(),
            events["ts"].max(),
            args.horizon,
            args.lookback,
            n_train=n_train,
            step_days=args.step,
        )
        cuts = [*split.train, split.valid, split.test]
        snaps = labelled_sets(events, customers, cuts, label, "churned")
        X, y = stack([snaps[t] for t in split.train])
        (Xv, yv), (Xt, yt) = snaps[split.valid], snaps[split.test]
        for name in args.variants:
            kwargs = {"bgnbd_horizon_days": args.horizon, **VARIANTS[name]}
            for seed in args.seeds:
                model = ChurnModel(random_state=seed, **kwargs).fit(X, y, Xv, yv)
                pv, pt = model.predict_raw(Xv), model.predict_raw(Xt)
                row = [
                    average_precision_score(yv, pv),
                    roc_auc_score(yv, pv),
                    average_precision_score(yt, pt),
                    roc_auc_score(yt, pt),
                ]
                cells = " | ".join(f"{v:.3f}" for v in np.round(row, 3))
                print(
                    f"| {n_train} | {name} | {seed} | {model.best_iteration_} | {cells} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
