"""The end of `omni run`: a customer's list, then what they just did sent as live events
(a store purchase of a recommended product, web views in another category), then their
changed list, as a channel would see it."""

from __future__ import annotations

import time
from dataclasses import dataclass

import pandas as pd

DEMO_K = 10
VISIBLE_WITHIN_S = 10.0
"""How long the demo waits for the events to show in the answer before it says so."""


@dataclass
class DemoResult:
    """Before and after: the lists as (product_id, reason) pairs and how long it took."""

    before: list[tuple[str, str]]
    after: list[tuple[str, str]]
    bought: str
    viewed: list[str]
    visible_s: float | None  # None: the answer did not change in time
    churn: tuple[float | None, float | None]  # churn probability before, after
    viewed_ranks: dict[str, int]  # rank (1 = best) of each viewed product in the top 50

    def lines(self) -> list[str]:
        """What `omni run` prints."""
        out = [f"sent: a store purchase of {self.bought}, web views of {', '.join(self.viewed)}"]
        if self.visible_s is None:
            out.append(f"the answer did not change within {VISIBLE_WITHIN_S:.0f} s")
            return out
        out.append(f"the answer changed {self.visible_s * 1000:,.0f} ms after the 200")
        after = {p for p, _ in self.after}
        left = [p for p, _ in self.before if p not in after]
        before = {p for p, _ in self.before}
        came = [f"{p} ({reason})" for p, reason in self.after if p not in before]
        out.append(f"  left the list: {', '.join(left) or 'nothing'}")
        out.append(f"  new in the list: {', '.join(came) or 'nothing'}")
        ranks = ", ".join(f"{p} #{r}" for p, r in self.viewed_ranks.items()) or "none"
        out.append(f"  viewed products in the top 50 (you looked at this): {ranks}")
        if None not in self.churn:
            out.append(f"  churn probability: {self.churn[0]:.3f} -> {self.churn[1]:.3f}")
        return out


def demo_events(
    customer: str,
    before: list[tuple[str, str]],
    products: pd.DataFrame,
    store_id: str | None,
    at: pd.Timestamp,
) -> tuple[list[dict], str, list[str]]:
    """(events, product bought, products viewed): a store purchase of the first listed
    product at ``at``, then views of three products of a category none of the listed
    ones is in, over the next minutes."""
    bought = before[0][0]
    listed = products["product_id"].isin([p for p, _ in before])
    shown = set(products.loc[listed, "category"].dropna())
    others = products[~products["category"].isin(shown) & products["category"].notna()]
    pool = others if len(others) else products[~listed]
    category = pool["category"].iloc[0] if len(others) else None
    viewed = pool[pool["category"] == category] if category is not None else pool
    viewed = viewed["product_id"].astype("str").head(3).tolist()
    purchase = {
        "customer_id": customer,
        "ts": at.isoformat(),
        "channel": "store",
        "event_type": "purchase",
        "product_id": bought,
        "order_id": f"DEMO-{at:%Y%m%d%H%M%S}",
        "quantity": 1,
        "amount": 1.0,
    }
    if store_id is not None:
        purchase["store_id"] = store_id
    views = [
        {
            "customer_id": customer,
            "ts": (at + pd.Timedelta(minutes=1 + i)).isoformat(),
            "channel": "web",
            "event_type": "view",
            "product_id": p,
        }
        for i, p in enumerate(viewed)
    ]
    return [purchase, *views], bought, viewed


def run_demo(
    session, url: str, customer: str, products: pd.DataFrame, store_id: str | None
) -> DemoResult:
    """Ask for ``customer``'s list, send the demo events, and ask again until the answer
    changes. The events are stamped in the minutes before the snapshot's cutoff (the
    demo data's present), so that they do not move the end of the data: the next
    snapshot or training sees them without its cutoff changing. ``session``: a requests
    session (headers set)."""
    body = {"customer_id": customer, "k": DEMO_K}
    first = _ask(session, url, body)
    before = [(i["product_id"], i["reason"]) for i in first["items"]]
    at = pd.Timestamp(first["as_of"]) - pd.Timedelta(minutes=10)
    events, bought, viewed = demo_events(customer, before, products, store_id, at)
    sent = session.post(f"{url}/events", json={"events": events}, timeout=10)
    if sent.status_code != 200:
        raise RuntimeError(f"POST /events answered {sent.status_code}: {sent.text[:300]}")
    t0 = time.perf_counter()
    while True:
        now = _ask(session, url, body)
        after = [(i["product_id"], i["reason"]) for i in now["items"]]
        waited = time.perf_counter() - t0
        if after != before or waited > VISIBLE_WITHIN_S:
            break
        time.sleep(0.05)
    deep = _ask(session, url, {**body, "k": 50})["items"]
    ranks = {i["product_id"]: r for r, i in enumerate(deep, 1) if i["product_id"] in viewed}
    churn = (first["churn"]["probability"], now["churn"]["probability"])
    visible = waited if after != before else None
    return DemoResult(before, after, bought, viewed, visible, churn, ranks)


def _ask(session, url: str, body: dict) -> dict:
    r = session.post(f"{url}/recommend", json=body, timeout=10)
    r.raise_for_status()
    return r.json()
