"""The training jobs by name, their registered models and default windows.

Kept free of heavy imports: the command line reads it to build `omni train --help`.
"""

from __future__ import annotations

REGISTERED_NAMES = {"churn": "churn", "channel": "next_best_channel"}
"""Per-customer job (`omni train churn|channel`) -> its registered model's name."""
CUSTOMER_JOBS: tuple[str, ...] = tuple(REGISTERED_NAMES)
"""The per-customer jobs, in the order `omni train all` runs them."""
RECS_HORIZON_DAYS = 14
"""The recommender's default evaluation / label window after its test cutoff, in days."""
