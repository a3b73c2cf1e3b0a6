"""Seeded, fully vectorised synthetic omnichannel retail data with planted, documented structure.

``generate(n_customers, days, seed)`` returns a :class:`~features.sources.base.SourceData`
whose four tables follow the contract in :mod:`features.contract.schema`, plus ground truth
in ``truth``. Events cover ``[end - days, end)``, are sorted by ``ts``, and the same
arguments always give the same frames (one ``np.random.default_rng(seed)``, never the
clock). No Python loop runs over customers or events; loops run only over a handful of
channels.

Planted structure (later models are tested on recovering it):

1. **Customers.** Loyalty tier none/bronze/silver/gold (40/30/20/10 %); higher tiers buy more
   (purchase-rate multiplier 0.7/1.0/1.4/2.0). ~15 % sign up inside the window and have no event
   before ``signup_ts``. A home store drawn by store size; stores belong to 1-6 regions.
   Consent: email ~70 %, sms ~40 %, push ~35 % (app users only), direct mail ~60 %; a channel
   that is the customer's dominant affinity is consented with probability 0.9.
2. **Channel affinity.** Dirichlet over web, app, store, email, sms, push, direct_mail with
   alpha = 0.1 x (1.3, 0.9, 1.6, 1.3, 0.8, 0.7, 0.8), so most customers have one dominant
   channel (median top share ~0.75). The *effective* affinity is the
   affinity restricted to channels the customer can use (app only for app users, outreach only
   when consented), renormalised; ``best_channel`` is its argmax. For each purchase occasion,
   with probability 0.8 an engagement is drawn from the effective affinity:
   outreach channel -> ``open`` 1-72 h before, ``click`` 2-20 min before and in 35 % a
   ``redeem`` 5-60 s before the purchase (all with the campaign's ``campaign_id``; the
   click deep-links to checkout, so the order has no views); web/app -> the order is placed on
   that channel; store -> the order is a store basket. Otherwise (no engagement, or outreach
   engagement) the purchase channel is drawn from the shopping mix: 80 % on the customer's
   shopping preference (= best channel when that is web/app/store, else drawn store 50 % /
   web 30 % / app 20 %). Every online order that is not outreach-triggered has a session of
   ``view`` + ``add_to_cart`` events (2-40 min before) on the order's channel. So "channel of
   the last engagement in the 7 days before a purchase, else the purchase channel" recovers
   ``best_channel`` for most purchases.
3. **Outreach.** Campaigns send ``message_sent`` (with ``campaign_id``) to a random share of
   consented customers: email weekly (50 %), sms fortnightly (40 %), push weekly (30 %), direct
   mail every 4 weeks (60 %). Organic ``open`` probability is sigmoid(-3.5 + 7 a) and ``click``
   given open sigmoid(-2.5 + 5 a), a = the customer's effective affinity for the channel.
4. **Shopping.** Purchase occasions per customer are Poisson with a Gamma(0.8) rate (heavy
   tail). A store occasion is one basket: a ``store_visit`` plus 1 + Poisson(2) ``purchase``
   lines sharing ``order_id`` and ``store_id`` (85 % home store, else mostly a store of the same
   region). Online orders (1 + Poisson(1.2) lines) carry ``order_id``; 15 % are buy-online-
   pick-up-in-store (``store_id`` = pickup store, channel stays web/app). ``quantity`` = 1 +
   Poisson(0.35); ``amount`` = net revenue = quantity * price * noise - discount; ``discount``
   is set on 12 % of lines (90 % on orders with a ``redeem``; ~21 % overall), else null. 3 % of
   lines get a ``return`` 1-30 days later (same order/product/store/channel, positive
   quantity, negative amount). Browse-only web/app sessions (rate 0.3 x the purchase rate x
   online affinity) add views without a purchase. Every second browse view (and the
   add_to_carts of every second browse session) shows a product of the customer's next
   order when one follows within 7 days, on any channel (people look before they buy,
   online or in store; issue 17's "you looked at this"); the others a product of their
   tastes.
5. **Products.** 20 categories with lognormal prices and brands; popularity is Zipf within a
   category. Customers have Dirichlet category tastes and 3-8 personal staples; 45 % of basket
   lines are a staple (strong buy-again signal), the rest come from tasted categories by
   popularity.
6. **Churn.** ~20 % of customers (28/20/14/8 % by tier) lapse on a random day of the second
   half of the window (only if at least 30 days after signup). Over the 60-90 days before the
   lapse their purchase rate falls linearly to 20 %; after it they have no purchase, return,
   view or engagement (they still receive ``message_sent``).
7. **Identifiers.** ``customer_id`` is set only on outreach events (``message_sent``/``open``/
   ``click``/``redeem`` on email, sms, push, direct_mail), null elsewhere. Each customer has an
   ``email_hash``, ``phone_hash``, ``loyalty_id``, a web device and (app users) an app device.
   Web/app events carry the channel's ``device_id``; ``email_hash`` when the session is logged
   in (60 % of sessions) and always on purchases and online returns. Email events carry
   ``email_hash``, sms ``phone_hash``, push the app ``device_id``, direct mail nothing extra.
   Store baskets and store returns carry ``loyalty_id``; 30 % of baskets also ``phone_hash``.
   BOPIS purchase lines carry ``email_hash``, ``device_id`` and the customer's ``loyalty_id``.
   Over-merge hazards: ~0.5 % of customers (web shoppers) share a family tablet in groups of
   2-4 (it is their web device; each logs in with their own e-mail); each store has a default
   loyalty card scanned on 1 % of its baskets instead of the customer's card (30 % of those
   baskets also carry the customer's phone). Without the hubs every identifier belongs to one
   person, yet not everything links: a device whose sessions never log in stays anonymous, and
   a customer without outreach consent has no event with ``customer_id`` (their store and
   online identities meet only through BOPIS). At 20k x 365 about 86 % of events reach a
   ``customer_id`` through identifiers and ~38 % of people are split over several components.

Ground truth (``SourceData.truth``): ``customers`` (customer_id, churned, lapse_ts,
best_channel, affinity_<channel>, shopping_preference, tier, uses_app), ``event_person``
(``person_id`` of every event, aligned row by row with ``events``), ``shared_identifiers``
(column, value, kind = family_tablet | store_default_card, n_people = distinct people seen
with it in the events) and ``staples`` (customer_id, product_id).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from features.contract import schema
from features.cutoffs import to_utc
from features.sources.base import SourceData

DAY = 86_400
HOUR = 3_600
MINUTE = 60

AFFINITY_CHANNELS: tuple[str, ...] = ("web", "app", "store", "email", "sms", "push", "direct_mail")
"""Conversion channels of the latent affinity; generation code indexes channels in this order."""
WEB, APP, STORE, EMAIL, SMS, PUSH, DIRECT_MAIL = range(7)
SHOP = (WEB, APP, STORE)
OUTREACH = (EMAIL, SMS, PUSH, DIRECT_MAIL)
AFFINITY_ALPHA = 0.1 * np.array([1.3, 0.9, 1.6, 1.3, 0.8, 0.7, 0.8])
SHOP_PREF_BASE = np.array([0.3, 0.2, 0.5])  # web, app, store for outreach-affine customers
SHOP_PREF_SHARE = 0.8
APP_USER_P = 0.5

TIER_P = np.array([0.40, 0.30, 0.20, 0.10])
TIER_RATE = np.array([0.7, 1.0, 1.4, 2.0])
TIER_CHURN = np.array([0.28, 0.20, 0.14, 0.08])
LATE_SIGNUP_P = 0.15
CONSENT_RATE = {EMAIL: 0.70, SMS: 0.40, PUSH: 0.35, DIRECT_MAIL: 0.60}
CONSENT_IF_DOMINANT = 0.9

OCCASIONS_PER_YEAR = 11.0
RATE_GAMMA_SHAPE = 0.8
BROWSE_RATIO = 0.3
ENGAGE_P = 0.8
REDEEM_P = 0.35
STORE_LINES_MEAN = 2.0
ONLINE_LINES_MEAN = 1.2
EXTRA_VIEWS_MEAN = 0.7
BROWSE_VIEWS_MEAN = 1.5
BROWSE_CART_P = 0.25
LOOK_AHEAD_DAYS = 7
STAPLE_P = 0.45
QUANTITY_EXTRA_MEAN = 0.35
DISCOUNT_P = 0.12
REDEEM_DISCOUNT_P = 0.9
RETURN_P = 0.03
BOPIS_P = 0.15
HOME_STORE_P = 0.85
SAME_REGION_P = 0.8
LOGIN_P = 0.6
TILL_PHONE_P = 0.30
DEFAULT_CARD_P = 0.01
FAMILY_TABLET_SHARE = 0.005
CHURN_DECLINE_DAYS = (60, 90)
CHURN_FLOOR = 0.2
ZIPF_EXPONENT = 1.1

# period (days), first send (day offset), share of consented customers targeted, max delay (s)
CAMPAIGNS: dict[int, tuple[int, int, float, int]] = {
    EMAIL: (7, 2, 0.5, 2 * HOUR),
    SMS: (14, 5, 0.4, 2 * HOUR),
    PUSH: (7, 4, 0.3, 2 * HOUR),
    DIRECT_MAIL: (28, 12, 0.6, 3 * DAY),
}
CAMPAIGN_PREFIX = {EMAIL: "EM", SMS: "SM", PUSH: "PU", DIRECT_MAIL: "DM"}
PRE_WINDOW_CAMPAIGNS = 3

CATEGORIES: tuple[str, ...] = (
    "grocery",
    "dairy",
    "bakery",
    "beverages",
    "snacks",
    "frozen",
    "produce",
    "meat",
    "household",
    "personal_care",
    "beauty",
    "baby",
    "pet",
    "apparel",
    "footwear",
    "electronics",
    "home",
    "toys",
    "sports",
    "garden",
)
REGIONS: tuple[str, ...] = ("north", "south", "east", "west", "central", "coast")

_CHANNEL_CODE = np.array([schema.CHANNELS.index(c) for c in AFFINITY_CHANNELS], dtype=np.int8)
_ET = {e: i for i, e in enumerate(schema.EVENT_TYPES)}
_SORT_PRIORITY = np.zeros(len(schema.EVENT_TYPES), dtype=np.int64)
for _et, _prio in {"open": 1, "view": 1, "click": 2, "add_to_cart": 2, "redeem": 3}.items():
    _SORT_PRIORITY[_ET[_et]] = _prio
_SORT_PRIORITY[_ET["purchase"]] = 4
_SORT_PRIORITY[_ET["return"]] = 5
_MAX_DELAY = np.zeros(len(AFFINITY_CHANNELS), dtype=np.int64)
for _ch, _spec in CAMPAIGNS.items():
    _MAX_DELAY[_ch] = _spec[3]


# ----------------------------------------------------------------------------- small helpers


def _decimal_ids(prefix: str, numbers: np.ndarray, min_width: int) -> np.ndarray:
    """Fixed-width ``prefix + zero-padded number`` ids as a numpy bytes array (fast, no loop)."""
    numbers = np.asarray(numbers, dtype=np.int64)
    top = int(numbers.max()) if len(numbers) else 0
    width = max(min_width, len(str(top)))
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    digits = ((numbers[:, None] // powers) % 10 + ord("0")).astype(np.uint8)
    return _with_prefix(prefix, digits)


def _hex_ids(values: np.ndarray, width: int = 16) -> np.ndarray:
    """Fixed-width lowercase hex strings of unsigned integers as a numpy bytes array."""
    shifts = np.arange(width - 1, -1, -1, dtype=np.uint64) * np.uint64(4)
    nibbles = (values.astype(np.uint64)[:, None] >> shifts) & np.uint64(15)
    return _with_prefix("", np.frombuffer(b"0123456789abcdef", np.uint8)[nibbles])


def _with_prefix(prefix: str, body: np.ndarray) -> np.ndarray:
    """Glue a constant prefix to a (rows, width) uint8 matrix and view rows as bytes strings."""
    head = np.broadcast_to(np.frombuffer(prefix.encode(), np.uint8), (len(body), len(prefix)))
    chars = np.ascontiguousarray(np.concatenate([head, body], axis=1))
    return chars.view(f"S{chars.shape[1]}").ravel()


def _string_column(names: np.ndarray, idx: np.ndarray) -> pa.Array:
    """Arrow string array ``names[idx]`` with nulls where ``idx < 0``, built from raw buffers.

    ``names`` is a fixed-width bytes array; rows are gathered as a uint8 matrix (far faster than
    numpy's bytes-dtype fancy indexing) and wrapped without copying as an Arrow large_string,
    the storage pandas' string dtype uses.
    """
    width = names.dtype.itemsize
    chars = names.view(np.uint8).reshape(len(names), width)
    valid = idx >= 0
    n_null = len(idx) - int(np.count_nonzero(valid))
    offsets = np.empty(len(idx) + 1, dtype=np.int64)
    offsets[0] = 0
    if n_null:
        data = np.take(chars, idx[valid], axis=0)
        np.cumsum(valid, dtype=np.int64, out=offsets[1:])
        offsets *= width
        bitmap = pa.py_buffer(np.packbits(valid, bitorder="little"))
    else:
        data = np.take(chars, idx, axis=0)
        offsets[1:] = np.arange(1, len(idx) + 1, dtype=np.int64) * width
        bitmap = None
    return pa.LargeStringArray.from_buffers(
        len(idx), pa.py_buffer(offsets), pa.py_buffer(data), bitmap, n_null
    )


def _label_column(labels: tuple[str, ...], codes: np.ndarray) -> pa.Array:
    """Arrow string array of ``labels[codes]`` (small vocabularies: categories, regions...)."""
    return pa.array(labels).take(pa.array(codes))


def _row_sampler(prob: np.ndarray) -> np.ndarray:
    """Flattened cumulative rows (row i spans (i, i + 1]) for vectorised per-row draws."""
    cum = np.cumsum(prob, axis=1)
    cum /= cum[:, -1:]
    cum += np.arange(len(prob))[:, None]
    cum[:, -1] = np.arange(1, len(prob) + 1)
    return cum.ravel()


def _draw_rows(
    rng: np.random.Generator, sampler: np.ndarray, k: int, rows: np.ndarray
) -> np.ndarray:
    """Draw one category per entry of ``rows`` from that row's distribution in ``sampler``."""
    query = rows + rng.random(len(rows))
    picked = np.searchsorted(sampler, query, side="right") - rows.astype(np.int64) * k
    return np.minimum(picked, k - 1)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function (engagement probabilities that rise steeply with affinity)."""
    return 1.0 / (1.0 + np.exp(-x))


def _uniform_s(rng: np.random.Generator, low: float, high: float, n: int) -> np.ndarray:
    """Integer seconds drawn uniformly in [low, high) (event offsets)."""
    return rng.uniform(low, high, n).astype(np.int64)


# ----------------------------------------------------------------------------- dimensions


@dataclass
class _Stores:
    """Stores: region, size (share of home customers) and a by-region index for draws."""

    region: np.ndarray
    weight: np.ndarray
    by_region: np.ndarray
    region_start: np.ndarray
    region_size: np.ndarray


def _make_stores(rng: np.random.Generator, n_stores: int) -> _Stores:
    """Stores spread over up to six regions, with lognormal sizes."""
    n_regions = int(np.clip(n_stores // 2, 1, len(REGIONS)))
    region = rng.permutation(np.arange(n_stores) % n_regions)
    weight = rng.lognormal(0.0, 0.5, n_stores)
    size = np.bincount(region, minlength=n_regions)
    return _Stores(
        region=region,
        weight=weight / weight.sum(),
        by_region=np.argsort(region, kind="stable"),
        region_start=np.concatenate([[0], np.cumsum(size)[:-1]]),
        region_size=size,
    )


def _pick_store(rng: np.random.Generator, home: np.ndarray, stores: _Stores) -> np.ndarray:
    """Store of a basket or pickup: mostly home, else mostly a store of the home region."""
    n = len(home)
    u = rng.random(n)
    region = stores.region[home]
    offset = (rng.random(n) * stores.region_size[region]).astype(np.int64)
    same_region = stores.by_region[stores.region_start[region] + offset]
    anywhere = rng.integers(0, len(stores.region), n)
    away = HOME_STORE_P + (1 - HOME_STORE_P) * SAME_REGION_P
    return np.where(u < HOME_STORE_P, home, np.where(u < away, same_region, anywhere))


@dataclass
class _Products:
    """Products with category, brand, price and a within-category popularity sampler."""

    category: np.ndarray
    brand: np.ndarray
    price: np.ndarray
    order: np.ndarray  # product indices sorted by category, most popular first
    key: np.ndarray  # category + cumulative popularity share, aligned with ``order``
    n_categories: int
    n_brands: int


def _make_products(rng: np.random.Generator, n_products: int) -> _Products:
    """Products over ~20 categories: lognormal prices, brands, Zipf popularity."""
    n_cat = min(len(CATEGORIES), n_products)
    share = rng.dirichlet(np.full(n_cat, 4.0))
    rest = rng.choice(n_cat, n_products - n_cat, p=share)
    category = rng.permutation(np.concatenate([np.arange(n_cat), rest]))
    size = np.bincount(category, minlength=n_cat)
    start = np.concatenate([[0], np.cumsum(size)[:-1]])
    order = np.lexsort((rng.random(n_products), category))
    sorted_cat = category[order]
    popularity = 1.0 / (np.arange(n_products) - start[sorted_cat] + 1.0) ** ZIPF_EXPONENT
    cum = np.cumsum(popularity)
    before = np.concatenate([[0.0], cum])[start]
    total = np.bincount(sorted_cat, weights=popularity, minlength=n_cat)
    key = sorted_cat + (cum - before[sorted_cat]) / total[sorted_cat]
    key[start + size - 1] = np.arange(1, n_cat + 1)
    n_brand = np.maximum(2, size // 20)
    brand_start = np.concatenate([[0], np.cumsum(n_brand)[:-1]])
    brand = brand_start[category] + (rng.random(n_products) * n_brand[category]).astype(np.int64)
    log_mu = rng.uniform(np.log(2.0), np.log(60.0), n_cat)
    price = np.maximum(
        0.49, np.round(np.exp(log_mu[category] + 0.45 * rng.normal(size=n_products)), 2)
    )
    return _Products(category, brand, price, order, key, n_cat, int(n_brand.sum()))


def _popular_in(rng: np.random.Generator, products: _Products, category: np.ndarray) -> np.ndarray:
    """Draw one product per entry of ``category`` by within-category popularity."""
    pos = np.searchsorted(products.key, category + rng.random(len(category)), side="right")
    return products.order[np.minimum(pos, len(products.order) - 1)]


# ----------------------------------------------------------------------------- customers


@dataclass
class _Customers:
    """Latent and observed customer traits used by every behaviour generator."""

    n: int
    tier: np.ndarray
    signup: np.ndarray  # seconds from window start (negative = before the window)
    home: np.ndarray
    affinity: np.ndarray  # (n, 7) Dirichlet draw
    uses_app: np.ndarray
    able: np.ndarray  # (n, 7) channels the customer can use / is consented to
    effective: np.ndarray  # (n, 7) affinity restricted to ``able``, renormalised
    best: np.ndarray
    pref: np.ndarray  # shopping preference: WEB, APP or STORE
    effective_sampler: np.ndarray
    shop_sampler: np.ndarray
    taste_sampler: np.ndarray
    rate: np.ndarray  # purchase occasions per day before any decline
    churned: np.ndarray
    lapse: np.ndarray  # seconds from window start; window end for non-churners
    decline: np.ndarray  # seconds of declining rate before the lapse
    staples: np.ndarray  # flat product indices
    staple_start: np.ndarray
    staple_count: np.ndarray

    @property
    def start(self) -> np.ndarray:
        """First second (window-relative) at which the customer can have events."""
        return np.maximum(self.signup, 0)


def _make_customers(
    rng: np.random.Generator, n: int, days: int, stores: _Stores, products: _Products
) -> _Customers:
    """Draw every customer trait: profile, channels, shopping mix, tastes, churn, staples."""
    tier = rng.choice(len(TIER_P), n, p=TIER_P)
    late = rng.random(n) < LATE_SIGNUP_P
    signup = np.where(
        late, rng.uniform(0, days * DAY, n), -rng.uniform(DAY, 5 * 365 * DAY, n)
    ).astype(np.int64)
    home = rng.choice(len(stores.region), n, p=stores.weight)
    affinity = rng.dirichlet(AFFINITY_ALPHA, n)
    dominant = affinity.argmax(axis=1)
    uses_app = (rng.random(n) < APP_USER_P) | np.isin(dominant, (APP, PUSH))
    able = np.ones((n, len(AFFINITY_CHANNELS)), dtype=bool)
    able[:, APP] = uses_app
    able[:, list(OUTREACH)] = _draw_consent(rng, dominant, uses_app)
    effective = affinity * able
    effective /= effective.sum(axis=1, keepdims=True)
    best = effective.argmax(axis=1)
    pref, shop_mix = _shopping_mix(rng, best, able)
    taste = rng.dirichlet(np.full(products.n_categories, 0.3), n)
    taste_sampler = _row_sampler(taste)
    rate = (
        OCCASIONS_PER_YEAR
        / 365.0
        * TIER_RATE[tier]
        * rng.gamma(RATE_GAMMA_SHAPE, 1.0 / RATE_GAMMA_SHAPE, n)
    )
    churned, lapse, decline = _draw_churn(rng, tier, signup, days)
    staples, staple_start, staple_count = _draw_staples(rng, taste_sampler, products, n)
    return _Customers(
        n=n,
        tier=tier,
        signup=signup,
        home=home,
        affinity=affinity,
        uses_app=uses_app,
        able=able,
        effective=effective,
        best=best,
        pref=pref,
        effective_sampler=_row_sampler(effective),
        shop_sampler=_row_sampler(shop_mix),
        taste_sampler=taste_sampler,
        rate=rate,
        churned=churned,
        lapse=lapse,
        decline=decline,
        staples=staples,
        staple_start=staple_start,
        staple_count=staple_count,
    )


def _draw_consent(
    rng: np.random.Generator, dominant: np.ndarray, uses_app: np.ndarray
) -> np.ndarray:
    """Consent per outreach channel near the target rates; likelier for the dominant channel."""
    n = len(dominant)
    out = np.zeros((n, len(OUTREACH)), dtype=bool)
    for j, channel in enumerate(OUTREACH):
        eligible = uses_app if channel == PUSH else np.ones(n, dtype=bool)
        if not eligible.any():
            continue
        target = min(0.95, CONSENT_RATE[channel] / eligible.mean())
        is_dominant = dominant == channel
        share = min(is_dominant[eligible].mean(), 0.99)
        p_other = np.clip((target - CONSENT_IF_DOMINANT * share) / (1 - share), 0.02, 1.0)
        p = np.where(is_dominant, CONSENT_IF_DOMINANT, p_other)
        out[:, j] = eligible & (rng.random(n) < p)
    return out


def _shopping_mix(
    rng: np.random.Generator, best: np.ndarray, able: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Shopping preference (web/app/store) and the mix of purchase channels it implies."""
    n = len(best)
    shop_able = able[:, list(SHOP)]
    base = SHOP_PREF_BASE * shop_able
    drawn = _draw_rows(rng, _row_sampler(base), len(SHOP), np.arange(n))
    pref = np.where(np.isin(best, SHOP), best, drawn)
    others = np.maximum(shop_able.sum(axis=1, keepdims=True) - 1, 1)
    is_pref = np.arange(len(SHOP))[None, :] == pref[:, None]
    mix = np.where(is_pref, SHOP_PREF_SHARE, (1 - SHOP_PREF_SHARE) / others) * shop_able
    return pref, mix


def _draw_churn(
    rng: np.random.Generator, tier: np.ndarray, signup: np.ndarray, days: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Who lapses (more in low tiers), when (second half of the window), how long the decline."""
    n = len(tier)
    lapse = (rng.uniform(days / 2, days, n) * DAY).astype(np.int64)
    decline = (rng.uniform(*CHURN_DECLINE_DAYS, n) * DAY).astype(np.int64)
    churned = (rng.random(n) < TIER_CHURN[tier]) & (lapse > signup + 30 * DAY)
    return churned, np.where(churned, lapse, days * DAY), decline


def _draw_staples(
    rng: np.random.Generator, taste_sampler: np.ndarray, products: _Products, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """3-8 personal staple products per customer, from tasted categories by popularity."""
    count = rng.integers(3, 9, n)
    owner = np.repeat(np.arange(n), count)
    category = _draw_rows(rng, taste_sampler, products.n_categories, owner)
    start = np.concatenate([[0], np.cumsum(count)[:-1]])
    return _popular_in(rng, products, category), start, count


@dataclass
class _Identifiers:
    """Identifier strings and each customer's devices (index into ``device``)."""

    customer: np.ndarray
    email: np.ndarray
    phone: np.ndarray
    loyalty: np.ndarray  # n customer cards, then one default card per store
    device: np.ndarray  # n web devices, n app devices, then family tablets
    web_device: np.ndarray
    n_tablets: int


def _make_identifiers(
    rng: np.random.Generator, customers: _Customers, n_stores: int
) -> _Identifiers:
    """Hashed e-mails/phones, loyalty cards, devices; plant family tablets among web shoppers."""
    n = customers.n
    loyalty_numbers = rng.choice(9 * 10**9, n + n_stores, replace=False) + 10**9
    random_hex = rng.integers(0, np.iinfo(np.int64).max, (4, n), dtype=np.int64)
    members, group = _family_groups(rng, customers)
    n_tablets = int(group.max(initial=-1)) + 1
    web_device = np.arange(n)
    web_device[members] = 2 * n + group
    tablets = rng.integers(0, np.iinfo(np.int64).max, n_tablets, dtype=np.int64)
    return _Identifiers(
        customer=_decimal_ids("C", np.arange(1, n + 1), 7),
        email=_hex_ids(random_hex[0]),
        phone=_hex_ids(random_hex[1]),
        loyalty=_decimal_ids("L", loyalty_numbers, 10),
        device=_hex_ids(np.concatenate([random_hex[2], random_hex[3], tablets])),
        web_device=web_device,
        n_tablets=n_tablets,
    )


def _family_groups(
    rng: np.random.Generator, customers: _Customers
) -> tuple[np.ndarray, np.ndarray]:
    """Members and group number of 2-4 web-preferring customers per shared tablet (~0.5 %)."""
    candidates = np.flatnonzero(customers.pref == WEB)
    target = min(round(FAMILY_TABLET_SHARE * customers.n), len(candidates))
    sizes = rng.integers(2, 5, max(target // 2, 1))
    sizes = sizes[np.cumsum(sizes) <= target]
    members = rng.choice(candidates, int(sizes.sum()), replace=False)
    return members, np.repeat(np.arange(len(sizes)), sizes)


# ----------------------------------------------------------------------------- behaviour


def _occasion_times(
    rng: np.random.Generator, customers: _Customers, rate: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Poisson occasion days per customer over their active span, thinned by the churn decline."""
    start = customers.start / DAY
    span = np.maximum(customers.lapse / DAY - start, 0.0)
    count = rng.poisson(rate * span)
    person = np.repeat(np.arange(customers.n, dtype=np.int32), count)
    day = start[person] + rng.random(len(person)) * span[person]
    decline_start = (customers.lapse - customers.decline)[person] / DAY
    progress = (day - decline_start) / (customers.decline[person] / DAY)
    weight = np.where(customers.churned[person], 1 - (1 - CHURN_FLOOR) * progress, 1.0)
    keep = rng.random(len(person)) < np.clip(weight, CHURN_FLOOR, 1.0)
    return person[keep], np.floor(day[keep]).astype(np.int64)


def _time_of_day(rng: np.random.Generator, channel: np.ndarray) -> np.ndarray:
    """Seconds into the day: stores trade 9-21 h, online peaks in the evening."""
    n = len(channel)
    in_store = 9 * HOUR + rng.random(n) * 12 * HOUR
    online = np.mod(rng.normal(20.5 * HOUR, 2.5 * HOUR, n), DAY)
    return np.where(channel == STORE, in_store, online).astype(np.int64)


@dataclass
class _Occasions:
    """Purchase occasions (orders) and browse-only sessions, one row each."""

    person: np.ndarray
    ts: np.ndarray
    channel: np.ndarray  # WEB, APP or STORE
    is_order: np.ndarray
    trigger: np.ndarray  # outreach channel that triggered the order, else -1
    store: np.ndarray  # basket store, BOPIS pickup store, else -1
    bopis: np.ndarray
    logged_in: np.ndarray
    default_card: np.ndarray
    till_phone: np.ndarray
    order: np.ndarray  # order number (rank by time), -1 for browse sessions


def _make_occasions(rng: np.random.Generator, customers: _Customers, stores: _Stores) -> _Occasions:
    """Orders (channel from affinity-driven engagement or shopping mix) and browse sessions."""
    person, day = _occasion_times(rng, customers, customers.rate)
    engaged = rng.random(len(person)) < ENGAGE_P
    engagement = _draw_rows(rng, customers.effective_sampler, len(AFFINITY_CHANNELS), person)
    shop = np.asarray(SHOP)[_draw_rows(rng, customers.shop_sampler, len(SHOP), person)]
    direct = engaged & np.isin(engagement, SHOP)
    channel = np.where(direct, engagement, shop)
    trigger = np.where(engaged & ~direct, engagement, -1)

    online_share = customers.effective[:, WEB] + customers.effective[:, APP]
    b_person, b_day = _occasion_times(rng, customers, customers.rate * BROWSE_RATIO * online_share)
    web_share = customers.effective[b_person, WEB] / np.maximum(online_share[b_person], 1e-12)
    b_channel = np.where(rng.random(len(b_person)) < web_share, WEB, APP)

    n_orders = len(person)
    person = np.concatenate([person, b_person])
    channel = np.concatenate([channel, b_channel])
    is_order = np.arange(len(person)) < n_orders
    ts = np.concatenate([day, b_day]) * DAY + _time_of_day(rng, channel)
    keep = (ts >= customers.start[person]) & (ts < customers.lapse[person])
    person, channel, is_order, ts = person[keep], channel[keep], is_order[keep], ts[keep]
    trigger = np.concatenate([trigger, np.full(len(b_person), -1)])[keep]
    return _finish_occasions(rng, customers, stores, person, ts, channel, is_order, trigger)


def _finish_occasions(
    rng: np.random.Generator,
    customers: _Customers,
    stores: _Stores,
    person: np.ndarray,
    ts: np.ndarray,
    channel: np.ndarray,
    is_order: np.ndarray,
    trigger: np.ndarray,
) -> _Occasions:
    """Stores, BOPIS, login, till identifiers and time-ranked order numbers of the occasions."""
    n = len(person)
    in_store = channel == STORE
    bopis = is_order & ~in_store & (rng.random(n) < BOPIS_P)
    store = np.where(in_store | bopis, _pick_store(rng, customers.home[person], stores), -1)
    order = np.full(n, -1, dtype=np.int64)
    orders = np.flatnonzero(is_order)
    order[orders[np.argsort(ts[orders], kind="stable")]] = np.arange(len(orders))
    return _Occasions(
        person=person,
        ts=ts,
        channel=channel,
        is_order=is_order,
        trigger=trigger,
        store=store,
        bopis=bopis,
        logged_in=rng.random(n) < LOGIN_P,
        default_card=in_store & (rng.random(n) < DEFAULT_CARD_P),
        till_phone=in_store & (rng.random(n) < TILL_PHONE_P),
        order=order,
    )


@dataclass
class _Lines:
    """Purchase lines of the orders."""

    occasion: np.ndarray
    product: np.ndarray
    quantity: np.ndarray
    amount: np.ndarray
    discount: np.ndarray


def _make_lines(
    rng: np.random.Generator,
    occasions: _Occasions,
    customers: _Customers,
    products: _Products,
    redeemed: np.ndarray,
) -> _Lines:
    """Basket lines: staples or tasted popular products, quantity, net amount, discount."""
    orders = np.flatnonzero(occasions.is_order)
    mean = np.where(occasions.channel[orders] == STORE, STORE_LINES_MEAN, ONLINE_LINES_MEAN)
    occasion = np.repeat(orders, 1 + rng.poisson(mean))
    person = occasions.person[occasion]
    staple_pick = customers.staple_start[person] + (
        rng.random(len(person)) * customers.staple_count[person]
    ).astype(np.int64)
    product = np.where(
        rng.random(len(person)) < STAPLE_P,
        customers.staples[staple_pick],
        _taste_products(rng, customers, products, person),
    )
    key = occasion.astype(np.int64) * len(products.price) + product
    first = np.sort(np.unique(key, return_index=True)[1])  # one line per product and order
    occasion, product = occasion[first], product[first]
    n = len(occasion)
    quantity = 1 + rng.poisson(QUANTITY_EXTRA_MEAN, n)
    gross = quantity * products.price[product] * rng.lognormal(0.0, 0.05, n)
    p_discount = np.where(redeemed[occasion], REDEEM_DISCOUNT_P, DISCOUNT_P)
    has_discount = rng.random(n) < p_discount
    discount = np.where(has_discount, np.round(gross * rng.uniform(0.05, 0.3, n), 2), np.nan)
    amount = np.round(gross - np.nan_to_num(discount), 2)
    return _Lines(occasion, product, quantity, amount, discount)


def _taste_products(
    rng: np.random.Generator, customers: _Customers, products: _Products, person: np.ndarray
) -> np.ndarray:
    """Products drawn from each person's category taste, then by popularity."""
    category = _draw_rows(rng, customers.taste_sampler, products.n_categories, person)
    return _popular_in(rng, products, category)


@dataclass
class _Campaigns:
    """Every campaign send (a few before the window too), grouped by channel in time order."""

    channel: np.ndarray
    send: np.ndarray  # window-relative seconds
    names: np.ndarray
    first: dict[int, int]
    count: dict[int, int]


def _make_campaigns(days: int) -> _Campaigns:
    """Steady campaign calendar per outreach channel, sent at 10:00."""
    channel, send, names, first, count = [], [], [], {}, {}
    for ch, (period, offset, _, _) in CAMPAIGNS.items():
        k = np.arange(-PRE_WINDOW_CAMPAIGNS, max(0, (days - offset - 1) // period) + 1)
        first[ch], count[ch] = sum(len(s) for s in send), len(k)
        send.append((offset + k * period) * DAY + 10 * HOUR)
        channel.append(np.full(len(k), ch))
        names.append(_decimal_ids(CAMPAIGN_PREFIX[ch], k + PRE_WINDOW_CAMPAIGNS, 4))
    return _Campaigns(
        np.concatenate(channel), np.concatenate(send), np.concatenate(names), first, count
    )


Part = dict[str, np.ndarray]


def _part(
    ts: np.ndarray,
    person: np.ndarray,
    channel: np.ndarray | int,
    event_type: str,
    **columns: np.ndarray,
) -> Part:
    """One batch of events; missing columns are filled with nulls when parts are joined."""
    n = len(ts)
    out = {
        "ts": np.asarray(ts, dtype=np.int64),
        "person": np.asarray(person, dtype=np.int32),
        "channel": np.broadcast_to(np.asarray(channel, dtype=np.int8), (n,)),
        "event_type": np.full(n, _ET[event_type], dtype=np.int8),
    }
    out.update(columns)
    return out


def _outreach_ids(person: np.ndarray, channel: np.ndarray | int, n: int) -> Part:
    """Identifiers of an outreach event: customer_id, plus email / phone / app device by channel."""
    channel = np.broadcast_to(channel, person.shape)
    app_device = np.where(channel == PUSH, n + person, -1)
    return {
        "cid": np.ones(len(person), dtype=bool),
        "email": channel == EMAIL,
        "phone": channel == SMS,
        "device": app_device,
    }


def _online_device(person: np.ndarray, channel: np.ndarray, ids: _Identifiers) -> np.ndarray:
    """Device of a web (browser or family tablet) or app event."""
    return np.where(channel == APP, len(ids.web_device) + person, ids.web_device[person])


def _latest_campaign(campaigns: _Campaigns, channel: np.ndarray, before: np.ndarray) -> np.ndarray:
    """Index of the latest campaign of each channel sent at or before ``before`` (-1 if none)."""
    out = np.full(len(channel), -1, dtype=np.int64)
    for ch in OUTREACH:
        on = channel == ch
        lo, k = campaigns.first[ch], campaigns.count[ch]
        pos = np.searchsorted(campaigns.send[lo : lo + k], before[on], side="right") - 1
        out[on] = np.where(pos >= 0, lo + pos, -1)
    return out


def _triggered_outreach(
    rng: np.random.Generator,
    occasions: _Occasions,
    customers: _Customers,
    campaigns: _Campaigns,
) -> tuple[list[Part], np.ndarray, np.ndarray, np.ndarray]:
    """open / click / redeem before outreach-triggered orders, plus the messages they answer.

    Returns the event parts, a per-occasion "redeemed" flag, and the (person, campaign) pairs
    that must have received a ``message_sent``.
    """
    occ = np.flatnonzero(occasions.trigger >= 0)
    person, channel, t = occasions.person[occ], occasions.trigger[occ], occasions.ts[occ]
    opened = t - _uniform_s(rng, HOUR, 72 * HOUR, len(occ))
    campaign = _latest_campaign(campaigns, channel, opened - _MAX_DELAY[channel])
    sent = campaigns.send[np.maximum(campaign, 0)]
    ok = (campaign >= 0) & (opened >= customers.start[person]) & (sent >= customers.signup[person])
    occ, person, channel, t, opened, campaign = (
        a[ok] for a in (occ, person, channel, t, opened, campaign)
    )
    clicked = t - _uniform_s(rng, 2 * MINUTE, 20 * MINUTE, len(occ))
    redeem = rng.random(len(occ)) < REDEEM_P
    redeemed = np.zeros(len(occasions.person), dtype=bool)
    redeemed[occ[redeem]] = True
    redeem_ts = t[redeem] - _uniform_s(rng, 5, 60, int(redeem.sum()))
    ids = _outreach_ids(person, channel, customers.n)
    parts = [
        _part(opened, person, channel, "open", campaign=campaign, **ids),
        _part(clicked, person, channel, "click", campaign=campaign, **ids),
        _part(
            redeem_ts,
            person[redeem],
            channel[redeem],
            "redeem",
            campaign=campaign[redeem],
            **_outreach_ids(person[redeem], channel[redeem], customers.n),
        ),
    ]
    return parts, redeemed, person, campaign


def _outreach_events(
    rng: np.random.Generator,
    customers: _Customers,
    campaigns: _Campaigns,
    forced_person: np.ndarray,
    forced_campaign: np.ndarray,
    days: int,
) -> list[Part]:
    """message_sent to a random share of consented customers per campaign, and organic replies.

    Pairs answered by a triggered open are always sent and get no extra organic open.
    """
    parts: list[Part] = []
    position = np.full(customers.n, -1, dtype=np.int64)
    for ch in OUTREACH:  # four channels
        members = np.flatnonzero(customers.able[:, ch])
        lo, k = campaigns.first[ch], campaigns.count[ch]
        send = campaigns.send[lo : lo + k]
        in_window = lo + np.flatnonzero((send >= 0) & (send < days * DAY))
        if not len(members) or not len(in_window):
            continue
        targeted = rng.random((len(in_window), len(members))) < CAMPAIGNS[ch][2]
        forced = np.zeros_like(targeted)
        position[members] = np.arange(len(members))
        hit = (forced_campaign >= in_window[0]) & (forced_campaign <= in_window[-1])
        forced[forced_campaign[hit] - in_window[0], position[forced_person[hit]]] = True
        row, col = np.nonzero(targeted | forced)
        person, campaign = members[col], in_window[row]
        ts = campaigns.send[campaign] + _uniform_s(rng, 0, CAMPAIGNS[ch][3], len(row))
        keep = ts >= customers.signup[person]
        organic = ~forced[row, col][keep]
        person, campaign, ts = person[keep], campaign[keep], ts[keep]
        ids = _outreach_ids(person, ch, customers.n)
        parts.append(_part(ts, person, ch, "message_sent", campaign=campaign, **ids))
        o_person, o_campaign, o_ts = person[organic], campaign[organic], ts[organic]
        parts += _organic_replies(rng, customers, ch, o_person, o_campaign, o_ts)
    return parts


def _organic_replies(
    rng: np.random.Generator,
    customers: _Customers,
    channel: int,
    person: np.ndarray,
    campaign: np.ndarray,
    sent: np.ndarray,
) -> list[Part]:
    """Opens and clicks on received messages, far likelier for customers affine to the channel."""
    affinity = customers.effective[person, channel]
    opens = rng.random(len(person)) < _sigmoid(-3.5 + 7.0 * affinity)
    clicks = opens & (rng.random(len(person)) < _sigmoid(-2.5 + 5.0 * affinity))
    open_ts = sent + _uniform_s(rng, HOUR / 2, 48 * HOUR, len(person))
    click_ts = open_ts + _uniform_s(rng, 10, 15 * MINUTE, len(person))
    n = customers.n
    return [
        _part(
            ts[mask],
            person[mask],
            channel,
            event_type,
            campaign=campaign[mask],
            **_outreach_ids(person[mask], channel, n),
        )
        for mask, ts, event_type in ((opens, open_ts, "open"), (clicks, click_ts, "click"))
    ]


def _session_events(
    rng: np.random.Generator,
    occasions: _Occasions,
    lines: _Lines,
    customers: _Customers,
    products: _Products,
    ids: _Identifiers,
) -> list[Part]:
    """Web/app views and add_to_cart: before online orders (not outreach-triggered) and browsing."""
    occ_of_line = lines.occasion
    shown = (occasions.channel[occ_of_line] != STORE) & (occasions.trigger[occ_of_line] < 0)
    line_occ, line_product = occ_of_line[shown], lines.product[shown]
    sessions = np.flatnonzero(
        occasions.is_order & (occasions.channel != STORE) & (occasions.trigger < 0)
    )
    extra = np.repeat(sessions, rng.poisson(EXTRA_VIEWS_MEAN, len(sessions)))
    browse = np.flatnonzero(~occasions.is_order)
    browse_views = np.repeat(browse, 1 + rng.poisson(BROWSE_VIEWS_MEAN, len(browse)))
    browse_cart = browse[rng.random(len(browse)) < BROWSE_CART_P]
    n_view, n_extra, n_browse, n_cart = (
        len(line_occ),
        len(extra),
        len(browse_views),
        len(browse_cart),
    )
    batches = (
        ("view", line_occ, -_uniform_s(rng, 2 * MINUTE, 40 * MINUTE, n_view), line_product),
        ("add_to_cart", line_occ, -_uniform_s(rng, 20, 2 * MINUTE, n_view), line_product),
        ("view", extra, -_uniform_s(rng, 2 * MINUTE, HOUR, n_extra), None),
        ("view", browse_views, _uniform_s(rng, 0, 20 * MINUTE, n_browse), "ahead"),
        ("add_to_cart", browse_cart, _uniform_s(rng, 0, 25 * MINUTE, n_cart), "ahead"),
    )
    parts = []
    for event_type, occ, offset, product in batches:  # five batches
        person, channel = occasions.person[occ], occasions.channel[occ]
        if isinstance(product, str) or product is None:
            looks_ahead = product == "ahead"
            product = _taste_products(rng, customers, products, person)
            if looks_ahead:
                ahead = _next_order_product(occasions, lines, occ)
                look = (np.arange(len(occ)) % 2 == 0) & (ahead >= 0)
                product = np.where(look, ahead, product)
        parts.append(
            _part(
                occasions.ts[occ] + offset,
                person,
                channel,
                event_type,
                product=product,
                device=_online_device(person, channel, ids),
                email=occasions.logged_in[occ],
            )
        )
    return parts


def _next_order_product(occasions: _Occasions, lines: _Lines, occ: np.ndarray) -> np.ndarray:
    """Per browse occasion in ``occ``: the product of the customer's first purchase line
    after it within :data:`LOOK_AHEAD_DAYS` (any channel), else -1."""
    line_person = occasions.person[lines.occasion].astype(np.int64)
    line_ts = occasions.ts[lines.occasion].astype(np.int64)
    base = int(min(line_ts.min(initial=0), occasions.ts.min(initial=0)))
    span = int(max(line_ts.max(initial=0), occasions.ts.max(initial=0))) - base + 1
    key = line_person * span + (line_ts - base)
    order = np.argsort(key, kind="stable")
    key = key[order]
    person, ts = occasions.person[occ].astype(np.int64), occasions.ts[occ].astype(np.int64)
    at = np.searchsorted(key, person * span + (ts - base), side="right")
    found = at < len(key)
    at = np.minimum(at, max(len(key) - 1, 0))
    if len(key) == 0:
        return np.full(len(occ), -1, np.int64)
    nxt = order[at]
    found &= (line_person[nxt] == person) & (line_ts[nxt] - ts <= LOOK_AHEAD_DAYS * DAY)
    return np.where(found, lines.product[nxt], -1)


def _order_events(occasions: _Occasions, lines: _Lines, ids: _Identifiers) -> list[Part]:
    """store_visit per store basket and one purchase per line, with their identifiers."""
    n = len(ids.web_device)
    card = np.where(occasions.default_card, n + occasions.store, occasions.person)
    basket = np.flatnonzero(occasions.is_order & (occasions.channel == STORE))
    visit = _part(
        occasions.ts[basket],
        occasions.person[basket],
        STORE,
        "store_visit",
        order=occasions.order[basket],
        store=occasions.store[basket],
        loyalty=card[basket],
        phone=occasions.till_phone[basket],
    )
    occ = lines.occasion
    person, channel = occasions.person[occ], occasions.channel[occ]
    in_store = channel == STORE
    loyalty = np.where(in_store, card[occ], np.where(occasions.bopis[occ], person, -1))
    purchase = _part(
        occasions.ts[occ],
        person,
        channel,
        "purchase",
        order=occasions.order[occ],
        product=lines.product,
        store=occasions.store[occ],
        quantity=lines.quantity,
        amount=lines.amount,
        discount=lines.discount,
        loyalty=loyalty,
        phone=occasions.till_phone[occ],
        email=~in_store,
        device=np.where(in_store, -1, _online_device(person, channel, ids)),
    )
    return [visit, purchase]


def _return_events(
    rng: np.random.Generator, occasions: _Occasions, lines: _Lines, ids: _Identifiers
) -> Part:
    """~3 % of lines come back 1-30 days later: same order/product/store, negative amount."""
    returned = np.flatnonzero(rng.random(len(lines.occasion)) < RETURN_P)
    occ = lines.occasion[returned]
    person, channel = occasions.person[occ], occasions.channel[occ]
    in_store = channel == STORE
    return _part(
        occasions.ts[occ] + _uniform_s(rng, DAY, 30 * DAY, len(occ)),
        person,
        channel,
        "return",
        order=occasions.order[occ],
        product=lines.product[returned],
        store=occasions.store[occ],
        quantity=lines.quantity[returned],
        amount=-lines.amount[returned],
        loyalty=np.where(in_store, person, -1),
        email=~in_store,
        device=np.where(in_store, -1, _online_device(person, channel, ids)),
    )


# ----------------------------------------------------------------------------- assembly

_FILL: dict[str, tuple[object, type]] = {
    "order": (-1, np.int32),
    "product": (-1, np.int32),
    "store": (-1, np.int32),
    "quantity": (-1, np.int32),
    "amount": (np.nan, np.float64),
    "discount": (np.nan, np.float64),
    "campaign": (-1, np.int32),
    "cid": (False, np.bool_),
    "email": (False, np.bool_),
    "phone": (False, np.bool_),
    "loyalty": (-1, np.int32),
    "device": (-1, np.int32),
}


def _join_parts(parts: list[Part], customers: _Customers, days: int) -> dict[str, np.ndarray]:
    """Join event batches into sorted columns, dropping events outside each person's active span.

    Safety net for the churn / signup rules: nothing before signup or the window, nothing after
    the window, and nothing but ``message_sent`` after a lapse. Columns are scattered straight
    into their sorted slots (no concatenate-then-gather copies: memory traffic dominates here).
    """
    ts = np.concatenate([p["ts"] for p in parts])
    person = np.concatenate([p["person"] for p in parts])
    event_type = np.concatenate([p["event_type"] for p in parts])
    keep = (
        (ts >= customers.start[person])
        & (ts < days * DAY)
        & ((event_type == _ET["message_sent"]) | (ts < customers.lapse[person]))
    )
    kept = np.flatnonzero(keep)
    order = kept[np.argsort(ts[kept] * 8 + _SORT_PRIORITY[event_type[kept]])]
    n_out = len(order)
    slot = np.full(len(ts), n_out, dtype=np.int64)  # dropped events land in a spare last slot
    slot[order] = np.arange(n_out)
    out = {"ts": ts[order], "person": person[order], "event_type": event_type[order]}
    del ts, person, event_type, keep, kept, order
    bounds = np.cumsum([0] + [len(p["ts"]) for p in parts])
    for name, (fill, dtype) in {"channel": (0, np.int8), **_FILL}.items():
        column = np.full(n_out + 1, fill, dtype=dtype)
        for part, lo, hi in zip(parts, bounds[:-1], bounds[1:], strict=True):  # ~20 batches
            if name in part:
                column[slot[lo:hi]] = part[name]
        out[name] = column[:n_out]
    return out


def _pandas_types(arrow_type: pa.DataType) -> pd.api.extensions.ExtensionDtype | None:
    """Arrow -> pandas dtype overrides: nullable Int64 for optional integer columns."""
    return pd.Int64Dtype() if arrow_type == pa.int64() else None


def _category(codes: np.ndarray, allowed: tuple[str, ...]) -> pa.DictionaryArray:
    """Dictionary (pandas Categorical) column whose categories are the full contract list."""
    return pa.DictionaryArray.from_arrays(pa.array(codes.astype(np.int8)), pa.array(allowed))


def _timestamps(start_us: int, seconds: np.ndarray, mask: np.ndarray | None = None) -> pa.Array:
    """UTC microsecond timestamps from window-relative seconds."""
    us = start_us + seconds.astype(np.int64) * 1_000_000
    return pa.array(us, type=pa.timestamp("us", tz="UTC"), mask=mask)


@dataclass
class _Names:
    """Id strings of every dimension, as numpy bytes arrays indexed like the generator's ints."""

    ids: _Identifiers
    products: np.ndarray
    stores: np.ndarray
    orders: np.ndarray
    campaigns: np.ndarray


def _events_frame(ev: dict[str, np.ndarray], names: _Names, start_us: int) -> pd.DataFrame:
    """The contract events frame from the sorted integer-coded events (empties ``ev`` as it goes).

    Each integer column is released once converted, which keeps peak memory near one copy.
    """
    ids = names.ids
    person = ev["person"]
    columns = {
        "customer_id": _string_column(ids.customer, np.where(ev.pop("cid"), person, -1)),
        "email_hash": _string_column(ids.email, np.where(ev.pop("email"), person, -1)),
        "phone_hash": _string_column(ids.phone, np.where(ev.pop("phone"), person, -1)),
        "ts": _timestamps(start_us, ev.pop("ts")),
        "channel": _category(_CHANNEL_CODE[ev.pop("channel")], schema.CHANNELS),
        "event_type": _category(ev.pop("event_type"), schema.EVENT_TYPES),
        "order_id": _string_column(names.orders, ev.pop("order")),
        "product_id": _string_column(names.products, ev.pop("product")),
        "store_id": _string_column(names.stores, ev.pop("store")),
        "amount": pa.array(ev.pop("amount"), from_pandas=True),
        "discount": pa.array(ev.pop("discount"), from_pandas=True),
        "campaign_id": _string_column(names.campaigns, ev.pop("campaign")),
        "loyalty_id": _string_column(ids.loyalty, ev.pop("loyalty")),
        "device_id": _string_column(ids.device, ev.pop("device")),
    }
    quantity = ev.pop("quantity")
    columns["quantity"] = pa.array(quantity.astype(np.int64), mask=quantity < 0)
    del quantity
    columns["event_id"] = pa.nulls(len(person), pa.string())  # derived when loaded
    columns["recommendation_id"] = pa.nulls(len(person), pa.string())  # no service showed any
    table = pa.table({name: columns.pop(name) for name in schema.EVENTS.names})
    return table.to_pandas(types_mapper=_pandas_types)


def _customers_frame(customers: _Customers, names: _Names, start_us: int) -> pd.DataFrame:
    """The contract customers table."""
    table = pa.table(
        {
            "customer_id": _string_column(names.ids.customer, np.arange(customers.n)),
            "signup_ts": _timestamps(start_us, customers.signup),
            "loyalty_tier": _category(customers.tier, schema.LOYALTY_TIERS),
            "home_store_id": _string_column(names.stores, customers.home),
            **{
                schema.CONSENT_COLUMNS[AFFINITY_CHANNELS[ch]]: pa.array(customers.able[:, ch])
                for ch in OUTREACH
            },
            "time_zone": pa.nulls(customers.n, pa.string()),  # every customer in the shop's
        }
    )
    return table.select(schema.CUSTOMERS.names).to_pandas()


def _products_frame(products: _Products, names: _Names) -> pd.DataFrame:
    """The contract products table."""
    brands = _decimal_ids("B", np.arange(1, products.n_brands + 1), 5)
    return pa.table(
        {
            "product_id": _string_column(names.products, np.arange(len(products.price))),
            "category": _label_column(CATEGORIES, products.category),
            "brand": _string_column(brands, products.brand),
            "price": pa.array(products.price),
        }
    ).to_pandas()


def _stores_frame(stores: _Stores, names: _Names) -> pd.DataFrame:
    """The contract stores table."""
    return pa.table(
        {
            "store_id": _string_column(names.stores, np.arange(len(stores.region))),
            "region": _label_column(REGIONS, stores.region),
        }
    ).to_pandas()


def _truth_customers(customers: _Customers, names: _Names, start_us: int) -> pd.DataFrame:
    """True churn, lapse, channel affinity, best channel, shopping preference and tier."""
    table = pa.table(
        {
            "customer_id": _string_column(names.ids.customer, np.arange(customers.n)),
            "churned": pa.array(customers.churned),
            "lapse_ts": _timestamps(start_us, customers.lapse, mask=~customers.churned),
            "best_channel": _label_column(AFFINITY_CHANNELS, customers.best),
            **{
                f"affinity_{name}": pa.array(customers.affinity[:, j])
                for j, name in enumerate(AFFINITY_CHANNELS)
            },
            "shopping_preference": _label_column(AFFINITY_CHANNELS, customers.pref),
            "tier": _label_column(schema.LOYALTY_TIERS, customers.tier),
            "uses_app": pa.array(customers.uses_app),
        }
    )
    return table.to_pandas()


def _truth_staples(customers: _Customers, names: _Names) -> pd.DataFrame:
    """Each customer's distinct staple products (the planted buy-again set)."""
    owner = np.repeat(np.arange(customers.n), customers.staple_count)
    key = np.unique(owner.astype(np.int64) * len(names.products) + customers.staples)
    return pa.table(
        {
            "customer_id": _string_column(names.ids.customer, key // len(names.products)),
            "product_id": _string_column(names.products, key % len(names.products)),
        }
    ).to_pandas()


def _distinct_people(hub: np.ndarray, person: np.ndarray, n_hubs: int) -> np.ndarray:
    """Number of distinct people seen with each hub identifier."""
    pairs = np.unique(hub.astype(np.int64) * (int(person.max(initial=0)) + 1) + person)
    return np.bincount(pairs // (int(person.max(initial=0)) + 1), minlength=n_hubs)


def _shared_identifiers(
    ev: dict[str, np.ndarray], ids: _Identifiers, n_stores: int
) -> pd.DataFrame:
    """The planted hub identifiers and how many distinct people each links in the events."""
    n = len(ids.web_device)
    n_tablets = ids.n_tablets
    tablet = ev["device"] >= 2 * n
    card = ev["loyalty"] >= n
    tablet_people = _distinct_people(ev["device"][tablet] - 2 * n, ev["person"][tablet], n_tablets)
    card_people = _distinct_people(ev["loyalty"][card] - n, ev["person"][card], n_stores)
    decode = np.char.decode
    return pd.DataFrame(
        {
            "column": ["device_id"] * n_tablets + ["loyalty_id"] * n_stores,
            "value": np.concatenate(
                [decode(ids.device[2 * n :]), decode(ids.loyalty[n:])]
            ).tolist(),
            "kind": ["family_tablet"] * n_tablets + ["store_default_card"] * n_stores,
            "n_people": np.concatenate([tablet_people, card_people]).astype(np.int64),
        }
    )


def _utc_microseconds(end: str | pd.Timestamp) -> int:
    """Window end as UTC epoch microseconds (naive times are taken as UTC)."""
    ts = to_utc(end)
    return int(ts.value) // 1_000  # Timestamp.value is in nanoseconds


def _check_arguments(n_customers: int, days: int, n_products: int, n_stores: int) -> None:
    """Reject sizes the generator cannot honour, with a clear message."""
    for name, value in {
        "n_customers": n_customers,
        "days": days,
        "n_products": n_products,
        "n_stores": n_stores,
    }.items():
        if int(value) != value or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _simulate_events(
    rng: np.random.Generator,
    customers: _Customers,
    stores: _Stores,
    products: _Products,
    ids: _Identifiers,
    campaigns: _Campaigns,
    days: int,
) -> tuple[dict[str, np.ndarray], int]:
    """Every behaviour, as sorted integer-coded event columns, and the number of orders."""
    occasions = _make_occasions(rng, customers, stores)
    triggered, redeemed, forced_person, forced_campaign = _triggered_outreach(
        rng, occasions, customers, campaigns
    )
    lines = _make_lines(rng, occasions, customers, products, redeemed)
    parts = [
        *_order_events(occasions, lines, ids),
        _return_events(rng, occasions, lines, ids),
        *_session_events(rng, occasions, lines, customers, products, ids),
        *triggered,
        *_outreach_events(rng, customers, campaigns, forced_person, forced_campaign, days),
    ]
    return _join_parts(parts, customers, days), int(occasions.is_order.sum())


# ----------------------------------------------------------------------------- public API


def generate(
    n_customers: int,
    days: int,
    seed: int,
    end: str | pd.Timestamp = "2026-01-01",
    n_products: int | None = None,
    n_stores: int | None = None,
    journey_response: bool = False,
) -> SourceData:
    """Generate a seeded synthetic omnichannel source covering [end - days, end) with ground truth.

    Same arguments, same frames. Planted structure and truth tables: see the module docstring.
    ``journey_response`` adds a win-back journey's history with a planted response
    (:mod:`features.sources.synthetic_journeys`); off, the output is unchanged.
    """
    n_products = min(50_000, max(500, n_customers // 2)) if n_products is None else n_products
    n_stores = max(10, n_customers // 2000) if n_stores is None else n_stores
    _check_arguments(n_customers, days, n_products, n_stores)
    start_us = _utc_microseconds(end) - days * DAY * 1_000_000
    rng = np.random.default_rng(seed)

    stores = _make_stores(rng, n_stores)
    products = _make_products(rng, n_products)
    customers = _make_customers(rng, n_customers, days, stores, products)
    ids = _make_identifiers(rng, customers, n_stores)
    campaigns = _make_campaigns(days)
    ev, n_orders = _simulate_events(rng, customers, stores, products, ids, campaigns, days)
    names = _Names(
        ids=ids,
        products=_decimal_ids("P", np.arange(1, n_products + 1), 6),
        stores=_decimal_ids("S", np.arange(1, n_stores + 1), 4),
        orders=_decimal_ids("O", np.arange(1, n_orders + 1), 9),
        campaigns=campaigns.names,
    )
    person = pa.table({"person_id": _string_column(ids.customer, ev["person"])})
    truth = {
        "customers": _truth_customers(customers, names, start_us),
        "event_person": person.to_pandas(),
        "shared_identifiers": _shared_identifiers(ev, ids, n_stores),
        "staples": _truth_staples(customers, names),
    }
    data = SourceData(
        events=_events_frame(ev, names, start_us),
        customers=_customers_frame(customers, names, start_us),
        products=_products_frame(products, names),
        stores=_stores_frame(stores, names),
        truth=truth,
        name="synthetic",
    )
    if journey_response:
        from features.sources.synthetic_journeys import add_journey_response

        data = add_journey_response(data, seed)
    return data
