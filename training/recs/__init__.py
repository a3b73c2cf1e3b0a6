"""Product recommendations: ALS + buy-again + popularity candidates, LightGBM lambdarank.

Public API: :class:`Recommender` (the model), the baselines, :func:`evaluate` on a
:class:`Holdout`, and ``training.recs.job.train_recommender`` (tracked in MLflow).
Imports are light: implicit and LightGBM load when a model is fitted.
"""

from training.recs.baselines import ALSRecommender, BuyAgainRecommender, PopularityRecommender
from training.recs.candidates import REASONS
from training.recs.data import History
from training.recs.evaluate import Evaluation, Holdout, evaluate
from training.recs.model import Recommender

__all__ = [
    "REASONS",
    "ALSRecommender",
    "BuyAgainRecommender",
    "Evaluation",
    "History",
    "Holdout",
    "PopularityRecommender",
    "Recommender",
    "evaluate",
]
