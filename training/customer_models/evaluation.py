"""Metrics and plots for the churn and next-best-channel models and their baselines."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from training.tracking import new_figure


def churn_metrics(y: np.ndarray, score: np.ndarray, probability: bool = False) -> dict[str, float]:
    """ROC AUC and average precision of a churn score (+ Brier and log loss for probabilities)."""
    from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

    y = np.asarray(y)
    out = {
        "roc_auc": float(roc_auc_score(y, score)),
        "average_precision": float(average_precision_score(y, score)),
        "positive_rate": float(y.mean()),
    }
    if probability:
        p = np.clip(score, 1e-6, 1 - 1e-6)
        out["brier"] = float(brier_score_loss(y, p))
        out["log_loss"] = float(log_loss(y, p, labels=[0, 1]))
    return out


def channel_metrics(y: np.ndarray, proba: pd.DataFrame) -> dict[str, float]:
    """Accuracy, top-2 accuracy and macro F1 of channel probabilities against labels."""
    from sklearn.metrics import f1_score

    y = np.asarray(y, dtype=object)
    classes = np.asarray(proba.columns, dtype=object)
    p = proba.to_numpy()
    order = np.argsort(-p, axis=1)
    top1 = classes[order[:, 0]]
    top2 = classes[order[:, : min(2, len(classes))]]
    return {
        "accuracy": float((top1 == y).mean()),
        "top2_accuracy": float((top2 == y[:, None]).any(axis=1).mean()),
        "macro_f1": float(f1_score(y, top1, average="macro", zero_division=0)),
    }


def class_metrics(y: np.ndarray, predicted: np.ndarray, classes: Sequence[str]) -> dict[str, float]:
    """Precision, recall and support of each class for one predicted class per row
    (``precision_<class>``, ``recall_<class>``, ``support_<class>``): where the model's top
    pick is right and which actual classes it misses, per class. Over ``classes`` only (a
    label outside them is still a miss of the class predicted for it); 0 where undefined."""
    from sklearn.metrics import precision_recall_fscore_support

    labels = list(classes)
    y, predicted = np.asarray(y, dtype=object), np.asarray(predicted, dtype=object)
    precision, recall, _, support = precision_recall_fscore_support(
        y, predicted, labels=labels, average=None, zero_division=0
    )
    out: dict[str, float] = {}
    for name, values in (("precision", precision), ("recall", recall), ("support", support)):
        out |= {f"{name}_{c}": float(v) for c, v in zip(labels, values, strict=True)}
    return out


def one_hot_choice(choice: np.ndarray, classes: list[str], index: pd.Index) -> pd.DataFrame:
    """A baseline's single pick as a probability table (1 on the pick, 0 elsewhere)."""
    values = np.asarray(choice, dtype=object)[:, None] == np.asarray(classes, object)[None, :]
    return pd.DataFrame(values.astype(np.float64), index=index, columns=classes)


def churn_figures(y: np.ndarray, proba: np.ndarray, baselines: dict[str, np.ndarray]) -> dict:
    """ROC, precision-recall and calibration plots (headless matplotlib figures)."""
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import precision_recall_curve, roc_curve

    scores = {"model": proba, **baselines}
    roc, ax = new_figure(figsize=(5, 4))
    for name, s in scores.items():
        fpr, tpr, _ = roc_curve(y, s)
        ax.plot(fpr, tpr, label=name)
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (test cutoff)")
    ax.legend()
    pr, ax = new_figure(figsize=(5, 4))
    for name, s in scores.items():
        prec, rec, _ = precision_recall_curve(y, s)
        ax.plot(rec, prec, label=name)
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall (test cutoff)")
    ax.legend()
    cal, ax = new_figure(figsize=(5, 4))
    frac, mean = calibration_curve(y, proba, n_bins=10, strategy="quantile")
    ax.plot(mean, frac, "o-", label="model")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(xlabel="predicted churn probability", ylabel="observed churn rate", title="Calibration")
    return {"roc.png": roc, "precision_recall.png": pr, "calibration.png": cal}


def confusion_figure(y: np.ndarray, predicted: np.ndarray, classes: list[str]):
    """Row-normalised confusion matrix of the channel model."""
    from sklearn.metrics import confusion_matrix

    labels = sorted(set(classes) | set(np.asarray(y, dtype=object)))
    cm = confusion_matrix(y, predicted, labels=labels, normalize="true")
    fig, ax = new_figure(figsize=(6, 5))
    im = ax.imshow(cm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set(xlabel="predicted", ylabel="actual", title="Next best channel (test cutoff)")
    fig.colorbar(im)
    fig.tight_layout()
    return fig


def importance_figure(importance: pd.Series, top: int = 25):
    """Horizontal bar chart of the largest feature importances (gain)."""
    head = importance.head(top)[::-1]
    fig, ax = new_figure(figsize=(6, 0.25 * len(head) + 1))
    ax.barh(head.index, head.to_numpy())
    ax.set(xlabel="total gain", title="Feature importance")
    fig.tight_layout()
    return fig


def comparison_table(metrics: Mapping[str, float]) -> pd.DataFrame:
    """The model and each baseline on the test cutoff, one row each (``model`` first) and
    one column per metric, from a job's ``test_*`` / ``baseline_<name>_test_*`` metrics.
    NaN where a metric does not apply (Brier of a baseline whose score is no probability)."""
    rows: dict[str, dict[str, float]] = {"model": {}}
    for key, value in metrics.items():
        owner, found, metric = key.partition("test_")
        if not found or metric == "positive_rate":
            continue
        if owner == "":
            rows["model"][metric] = value
        elif owner.startswith("baseline_") and owner.endswith("_"):
            rows.setdefault(owner[len("baseline_") : -1], {})[metric] = value
    return pd.DataFrame.from_dict(rows, orient="index")
