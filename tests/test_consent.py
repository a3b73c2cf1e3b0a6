"""Consent: unconsented channels removed, the rest renormalised, unknown consent = no."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.contract.consent import apply_consent


def test_consent_by_hand():
    proba = pd.DataFrame(
        {"email": [0.5, 0.5, 0.5], "sms": [0.2, 0.2, 0.2], "store": [0.3, 0.3, 0.3]},
        index=pd.Index(["a", "b", "stranger"], name="customer_id"),
    )
    customers = pd.DataFrame(
        {
            "customer_id": ["a", "b"],
            "consent_email": pd.array([True, False], dtype="boolean"),
            "consent_sms": pd.array([pd.NA, True], dtype="boolean"),
        }
    )
    out = apply_consent(proba, customers)
    np.testing.assert_allclose(out.loc["a"], [0.5 / 0.8, 0.0, 0.3 / 0.8])  # sms unknown: no
    np.testing.assert_allclose(out.loc["b"], [0.0, 0.2 / 0.5, 0.3 / 0.5])
    np.testing.assert_allclose(out.loc["stranger"], [0.0, 0.0, 1.0])  # not in the CRM
    np.testing.assert_allclose(out.sum(axis=1), 1.0)


def test_nothing_allowed_stays_zero():
    proba = pd.DataFrame({"email": [1.0]}, index=["a"])
    customers = pd.DataFrame({"customer_id": ["a"], "consent_email": [False]})
    assert apply_consent(proba, customers).to_numpy().tolist() == [[0.0]]
