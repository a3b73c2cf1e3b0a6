"""Identity resolution against the generator's planted truth: the person behind each event."""

from __future__ import annotations

import pandas as pd
import pytest

from features.sources.synthetic import generate
from features.store.identity import merge_quality, resolve_identities


@pytest.fixture(scope="module")
def data():
    return generate(n_customers=3000, days=180, seed=11)


def test_merge_precision_and_recall_on_planted_truth(data):
    truth = data.truth["event_person"]["person_id"]
    resolved, _ = resolve_identities(data.events)
    q = merge_quality(resolved["customer_id"], truth)
    # Measured 0.9995 / 0.94 at this size; the recall gap is customers the generator
    # never lets link (no login, no outreach), which no resolver can recover.
    assert q.precision >= 0.99, q
    assert q.recall >= 0.90, q

    # Without any identity resolution (one customer per identifier tuple) recall collapses.
    naive = resolved.copy()
    cols = ["customer_id_raw", "email_hash", "loyalty_id", "device_id", "phone_hash"]
    naive["customer_id_raw"] = data.events["customer_id"]
    key = pd.util.hash_pandas_object(naive[cols], index=False)
    assert merge_quality(key, truth).recall < 0.5 * q.recall


def test_guard_cuts_planted_hubs_and_raises_precision(data):
    truth = data.truth["event_person"]["person_id"]
    planted = data.truth["shared_identifiers"]
    _, report = resolve_identities(data.events, max_component_size=25)
    cut = set(zip(report.cut_identifiers["column"], report.cut_identifiers["value"], strict=True))
    planted_set = set(zip(planted["column"], planted["value"], strict=True))
    # A planted hub glues people when, on events that also carry another identifier,
    # it appears with two or more true persons. Those glued to two known CRM customers
    # or into an oversized component are cut; a tablet shared by two people the CRM
    # never saw fits the size limit and is missed (measured: 6 of 12 cut here, costing
    # 0.2 points of precision). A hub that only ever appears alone links nobody.
    ids = ["email_hash", "loyalty_id", "device_id", "phone_hash"]
    person = data.truth["event_person"]["person_id"].to_numpy()
    gluing: list[bool] = []
    for column, value in sorted(planted_set):
        on = (data.events[column] == value).to_numpy()
        others = data.events[[c for c in ids if c != column]].notna().any(axis=1).to_numpy()
        if len(set(person[on & others])) >= 2:
            gluing.append((column, value) in cut)
    assert sum(gluing) >= 0.5 * len(gluing), gluing
    # What is cut is mostly the planted hubs, not ordinary people's identifiers.
    assert len(cut & planted_set) >= 0.6 * len(cut), report.cut_identifiers

    # Switching the guard off (huge limit, and removing the CRM ids it also relies on)
    # merges people through those hubs: precision drops.
    has_id = data.events[ids].notna().any(axis=1).to_numpy()
    no_crm = data.events[has_id].assign(customer_id=None)
    loose, _ = resolve_identities(no_crm, max_component_size=10**9)
    tight, _ = resolve_identities(no_crm, max_component_size=12)
    p_loose = merge_quality(loose["customer_id"], truth[has_id]).precision
    p_tight = merge_quality(tight["customer_id"], truth[has_id]).precision
    assert p_tight > p_loose + 0.01, (p_tight, p_loose)  # measured +0.014 at this size
