"""Identity resolution on hand-built logs with a known answer."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.store.identity import merge_quality, resolve_identities


def _events(rows: list[dict]) -> pd.DataFrame:
    cols = ["customer_id", "email_hash", "device_id", "loyalty_id"]
    return pd.DataFrame([{c: r.get(c) for c in cols} for r in rows], columns=cols)


PERSON_A = [
    {"customer_id": "C1", "email_hash": "ea"},  # CRM e-mail
    {"email_hash": "ea", "device_id": "da"},  # logged-in web visit
    {"device_id": "da"},  # anonymous visit, same device
    {"email_hash": "ea", "loyalty_id": "la"},  # buy online, pick up in store
    {"loyalty_id": "la"},  # store purchase with the card
]
PERSON_B = [
    {"email_hash": "eb", "device_id": "db"},
    {"loyalty_id": "lb"},  # never linked to B's online identity
]


def test_links_identifiers_into_one_customer():
    out, report = resolve_identities(_events(PERSON_A + PERSON_B))
    assert out["customer_id"].iloc[:5].nunique() == 1
    assert out["customer_id"].iloc[0] == "C1"  # a known customer_id names the customer
    assert out["customer_id"].iloc[5] != out["customer_id"].iloc[6]
    assert report.n_customers == 3
    assert report.cut_identifiers.empty


def test_customer_ids_stable_across_reruns_and_row_order():
    events = _events(PERSON_A + PERSON_B)
    first, _ = resolve_identities(events)
    perm = np.random.default_rng(0).permutation(len(events))
    second, _ = resolve_identities(events.iloc[perm].reset_index(drop=True))
    assert second["customer_id"].tolist() == first["customer_id"].iloc[perm].tolist()
    assert first["customer_id"].iloc[5].startswith("U")


def _family_tablet_rows(with_crm_ids: bool) -> list[dict]:
    """Three people each log in with their own e-mail on one family tablet "dt"."""
    rows = []
    for p in "xyz":
        if with_crm_ids:
            rows.append({"customer_id": f"C{p}", "email_hash": f"e{p}"})
        rows += [
            {"email_hash": f"e{p}", "device_id": f"d{p}"},
            {"email_hash": f"e{p}", "device_id": "dt"},
            {"email_hash": f"e{p}", "loyalty_id": f"l{p}"},
        ]
    rows.append({"device_id": "dt"})  # an anonymous visit on the tablet: whose? nobody's
    return rows


def test_size_guard_cuts_a_shared_device_and_reports_it():
    events = _events(_family_tablet_rows(with_crm_ids=False))
    merged, _ = resolve_identities(events, max_component_size=100)
    assert merged["customer_id"].nunique() == 1  # a large enough limit lets it through

    out, report = resolve_identities(events, max_component_size=6)
    assert out["customer_id"].iloc[:9].nunique() == 3
    assert out["customer_id"].iloc[:3].nunique() == 1
    assert report.cut_identifiers[["column", "value"]].values.tolist() == [["device_id", "dt"]]
    assert report.cut_identifiers["component_size"].iloc[0] == 10
    assert report.n_events_only_cut == 1
    assert out["customer_id"].iloc[9] not in set(out["customer_id"].iloc[:9])


def test_two_known_customers_are_never_merged():
    # Small component, but the CRM says Cx, Cy, Cz are different people.
    out, report = resolve_identities(_events(_family_tablet_rows(with_crm_ids=True)))
    assert out["customer_id"].iloc[:4].eq("Cx").all()
    assert out["customer_id"].iloc[:12].nunique() == 3
    assert report.cut_identifiers["value"].tolist() == ["dt"]


def test_guard_cuts_a_store_default_loyalty_card():
    rows = []
    for i in range(30):
        rows += [
            {"customer_id": f"C{i}", "email_hash": f"e{i}"},
            {"email_hash": f"e{i}", "loyalty_id": "STORE-DEFAULT"},
        ]
    out, report = resolve_identities(_events(rows), max_component_size=10)
    assert out["customer_id"].nunique() == 30
    assert report.cut_identifiers["value"].tolist() == ["STORE-DEFAULT"]
    assert report.cut_identifiers["links"].iloc[0] == 30


def test_unresolvable_row_is_named():
    with pytest.raises(ValueError, match="events row 2: no customer_id and no identifier"):
        resolve_identities(_events([{"email_hash": "e"}, {}]))


def test_merge_quality_known_answer():
    # Truth: {0,1,2} {3,4}. Prediction merges 2 with {3,4}.
    q = merge_quality(np.array([0, 0, 1, 1, 1]), np.array(["a", "a", "a", "b", "b"]))
    # Predicted pairs: (0,1) (2,3) (2,4) (3,4) -> true: (0,1) (3,4) -> precision 2/4.
    # True pairs: (0,1) (0,2) (1,2) (3,4) -> found: 2 -> recall 2/4.
    assert q.precision == pytest.approx(0.5)
    assert q.recall == pytest.approx(0.5)
    perfect = merge_quality(np.array([5, 5, 7]), np.array(["a", "a", "b"]))
    assert (perfect.precision, perfect.recall) == (1.0, 1.0)
