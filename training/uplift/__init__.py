"""Uplift models for journeys (issue 18): who buys *because* they were contacted, learnt
from the contacted and holdout customers of the decision log."""
