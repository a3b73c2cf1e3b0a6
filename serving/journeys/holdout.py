"""Holdouts: a stable share in [0, 1) per customer from a salted hash, so a customer stays
in (or out of) a holdout across restarts, processes, Python versions and re-runs.

The global holdout (``policy.global_holdout``) is never contacted by any journey; a
journey's holdout (``journey.holdout``) is kept out of that journey only. The two use
different salts, so membership of one says nothing about the other (docs/journeys.md).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from serving.journeys.spec import ContactPolicy, Journey

SEPARATOR = "\x1f"
"""Between salt and id in the hashed text (ASCII unit separator: in neither)."""
_BELOW_ONE = np.nextafter(1.0, 0.0)


def holdout_share(ids: Sequence[str] | np.ndarray, salt: str) -> np.ndarray:
    """Each id's share in [0, 1) as float64: the first 8 bytes (big-endian) of
    BLAKE2b(``salt + "\\x1f" + id``, digest_size=8) divided by 2**64.

    One hashlib call per id (no vectorised BLAKE2b exists); callers hash unique ids."""
    prefix = (salt + SEPARATOR).encode()
    blake2b = hashlib.blake2b
    digests = b"".join([blake2b(prefix + str(i).encode(), digest_size=8).digest() for i in ids])
    share = np.frombuffer(digests, dtype=">u8").astype(np.float64) / 2.0**64
    # a value within 2**-53 of 2**64 rounds to 1.0 as a float: keep the share below one
    return np.minimum(share, _BELOW_ONE)


def journey_salt(policy: ContactPolicy, journey: str) -> str:
    """The salt of one journey's holdout: the policy's salt and the journey's name."""
    return f"{policy.holdout_salt}/{journey}"


def in_global_holdout(ids: Sequence[str] | np.ndarray, policy: ContactPolicy) -> np.ndarray:
    """Bool mask: the ids no journey contacts (share < ``policy.global_holdout``)."""
    return holdout_share(ids, policy.holdout_salt) < policy.global_holdout


def in_journey_holdout(
    ids: Sequence[str] | np.ndarray, policy: ContactPolicy, journey: Journey
) -> np.ndarray:
    """Bool mask: the ids kept out of ``journey`` (share < ``journey.holdout``)."""
    return holdout_share(ids, journey_salt(policy, journey.name)) < journey.holdout
