"""The synthetic truth: click and conversion probabilities, auctions, and conversion delays.

Everything here works on whole columns (numpy arrays indexed by entity), never per row. The
click truth is a sum of many small effects, most of them on high-cardinality ids or on
interactions (creative x segment, publisher x creative format, channel x local hour, device x OS),
so that a model has to learn the structure, as it would on real logs. Only what a bidder could
see enters the truth, plus a modest per-user propensity: that part is learnable only through the
user's past clicks (the as-of counters), as in real data.
"""

from __future__ import annotations

from typing import Final

import numpy as np

from features.synth_world import (
    CHANNEL_CPM,
    CHANNEL_CTR,
    COUNTRIES,
    VISIBILITY_CTR,
    World,
)

Rows = dict[str, np.ndarray]

CTR_INTERCEPT: Final = -5.15  # sets the click rate on won rows near 1%
# Post-click conversion (at any time after the click): about 16% of clicks overall, by channel
# (CHANNELS order) web ~18%, app ~15%, video ~15%, social ~11%, email ~24%, ctv ~4%: performance
# display with retargeting, below the ~22% of Criteo's public conversion logs (Chapelle, KDD
# 2014) and well above prospecting display's 1-2%. Email readers act on what they click; a click
# on a TV is rare and rarely leads anywhere. (It was 6%: 500,000 impressions then gave pCVR a
# test window of 18 conversions.)
CVR_INTERCEPT: Final = -2.1
CHANNEL_CVR: Final = np.array([0.0, -0.1, -0.2, -0.3, 0.3, -0.5])
# What is on offer (campaign, creative) and where the click comes from (country, device) drive
# conversion far more than they drive clicks: the world's effects are scaled up here.
CVR_OFFER_SCALE: Final = 1.6
CVR_CONTEXT_SCALE: Final = 1.5
FATIGUE_PER_LOG_IMP: Final = 0.15  # logit drop per log(1 + impressions in the last 24 h)
MARKET_SIGMA: Final = 0.45  # log-normal spread of the highest competing bid
BID_MARGIN: Final = {"second": 0.75, "first": 0.62}  # log headroom over the expected market
USER_CTR_SD: Final = 0.3

# Conversion delay mixture (Chapelle, KDD 2014: about a third within an hour, half within a day).
DELAY_WITHIN_HOUR: Final = 0.34
DELAY_WITHIN_DAY: Final = 0.17  # on top of the hour share: 51% within a day
DELAY_MAX_DAYS: Final = 30.0


def _segment_sum(table: np.ndarray, row_entity: np.ndarray, segs: np.ndarray) -> np.ndarray:
    """Sum of table[entity, seg] over each row's segments (-1 pads the fixed-width array)."""
    out = np.zeros(row_entity.size)
    for k in range(segs.shape[1]):
        s = segs[:, k]
        has = s >= 0
        out += np.where(has, table[row_entity, np.maximum(s, 0)], 0.0)
    return out


def ctr_logit(w: World, r: Rows, imps_24h: np.ndarray, secs_since: np.ndarray) -> np.ndarray:
    """Log-odds of a click if the impression is shown; counters carry a mild fatigue effect."""
    ch, pub, pl, cr = r["channel"], r["publisher"], r["placement"], r["creative"]
    z = CTR_INTERCEPT + CHANNEL_CTR[ch]
    z = z + w.channel_hour_ctr[ch, r["local_hour"]] + w.channel_weekday_ctr[ch, r["local_wd"]]
    z = z + w.pub_ctr[pub] + w.pl_ctr[pl] + w.pl_size_ctr[pl] + VISIBILITY_CTR[w.pl_visibility[pl]]
    fmt, cmp = w.cr_format[cr], w.cr_cmp[cr]
    z = z + w.pub_format_ctr[pub, fmt] + w.channel_format_ctr[ch, fmt]
    z = z + w.cr_ctr[cr] + w.cmp_ctr[cmp]
    z = z + _segment_sum(w.cmp_seg_ctr, cmp, r["segments"])
    z = z + _segment_sum(w.cr_seg_ctr, cr, r["segments"])
    z = z + _segment_sum(w.seg_ctr[None, :], np.zeros_like(cr), r["segments"])
    z = z + w.device_os_ctr[r["device"], r["os"]]
    z = z + np.where(r["browser"] >= 0, w.browser_ctr[np.maximum(r["browser"], 0)], 0.0)
    z = z + w.exchange_ctr[r["exchange"]]
    z = z + w.country_ctr[r["country"]] + w.region_ctr[r["region"]] + w.city_ctr[r["city"]]
    z = z + r["user_ctr"]
    z = z - FATIGUE_PER_LOG_IMP * np.log1p(imps_24h)
    return z - 0.3 * (secs_since < 60.0)  # a burst of ads within a minute gets ignored


def cvr_logit(w: World, r: Rows) -> np.ndarray:
    """Log-odds of a conversion given a click: the advertiser's audience and the click's quality."""
    cr = r["creative"]
    cmp = w.cr_cmp[cr]
    k = CVR_OFFER_SCALE
    z = CVR_INTERCEPT + CHANNEL_CVR[r["channel"]] + k * (w.cmp_cvr[cmp] + w.cr_cvr[cr])
    z = z + _segment_sum(w.adv_seg_cvr, w.cmp_adv[cmp], r["segments"])
    z = z + CVR_CONTEXT_SCALE * (w.country_cvr[r["country"]] + w.device_cvr[r["device"]])
    z = z + w.pub_cvr[r["publisher"]]
    return z + r["user_cvr"]


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def auction(w: World, r: Rows, ctr_z: np.ndarray, rng: np.random.Generator) -> Rows:
    """Floor, our bid, the market price (highest competing bid), the outcome and what we paid.

    The market price is log-normal around a context-dependent median. The logging bidder bids
    with headroom over that median plus a noisy view of the click value, shading in first-price
    auctions, so it wins most auctions and the won rows are (mildly) selected, as in real logs.
    """
    n = r["channel"].size
    price_mult = np.array([c[3] for c in COUNTRIES])
    n_segs = (r["segments"] >= 0).sum(axis=1)
    mu = np.log(CHANNEL_CPM[r["channel"]]) + np.log(price_mult[r["country"]])
    mu = mu + w.pub_price[r["publisher"]] + w.exchange_price[r["exchange"]]
    mu = mu + 0.15 * np.cos(2 * np.pi * (r["local_hour"] - 20) / 24) + 0.04 * n_segs
    market = np.exp(mu + rng.normal(0, MARKET_SIGMA, n))
    floor = np.where(rng.random(n) < 0.7, np.exp(mu) * rng.uniform(0.3, 0.95, n), 0.0)
    value_view = 0.3 * (ctr_z - CTR_INTERCEPT - CHANNEL_CTR[r["channel"]] + rng.normal(0, 0.8, n))
    first = r["first_price"]
    margin = np.where(first, BID_MARGIN["first"], BID_MARGIN["second"])
    bid = np.round(np.exp(mu + margin + value_view), 4)
    floor, market = np.round(floor, 2), np.round(market, 4)
    won = bid >= np.maximum(floor, market)
    paid = np.where(first, bid, np.maximum(market, floor))
    return {
        "floor_price": floor,
        "bid_price": bid,
        "market_price": market,
        "won": won,
        "paying_price": np.where(won, paid, np.nan),
    }


def conversion_delay_seconds(
    rng: np.random.Generator, n: int, speed: np.ndarray | float = 1.0, window_days: float = 7.0
) -> np.ndarray:
    """Click-to-conversion delays: a third within the hour, half within a day, rest up to 30 d.

    `speed` (per row) reshapes the delays between an hour and the `window_days` window and
    leaves the rest: with x = log(d / 1 h) / log(W / 1 h) in (0, 1], d becomes
    1 h (W / 1 h) ** (x ** speed). A speed above 1 converts sooner (a two-day delay becomes
    hours), below 1 later; the shares within the hour and within the window, which the pCVR
    label's oracle depends on, are the same for every advertiser.
    """
    u, v = rng.random(n), rng.random(n)
    hour = 3600.0 * v**1.5  # front-loaded within the hour
    day = 3600.0 * 24.0**v  # log-uniform between 1 h and 24 h
    late = 86400.0 * DELAY_MAX_DAYS**v  # log-uniform between 1 d and 30 d
    cut1, cut2 = DELAY_WITHIN_HOUR, DELAY_WITHIN_HOUR + DELAY_WITHIN_DAY
    d = np.where(u < cut1, hour, np.where(u < cut2, day, late))
    span = np.log(86400.0 * window_days / 3600.0)
    x = np.clip(np.log(np.maximum(d, 3600.0) / 3600.0) / span, 0.0, 1.0)
    inside = (d > 3600.0) & (x < 1.0)
    return np.where(inside, 3600.0 * np.exp(span * x**speed), d)


def recent_impressions(user: np.ndarray, t_us: np.ndarray, window_us: int) -> Rows:
    """Per row: the user's impressions in [t - window, t) and seconds since the last one before t.

    The same as-of semantics as `features.profiles.add_user_counters` (strictly earlier events,
    same-timestamp rows blind to each other), in a few vectorised sorts: the truth needs these
    numbers before clicks exist, and a second full counter pass would double the cost of a
    million-row log. `user` < 0 marks anonymous rows (0 impressions, infinite gap); a test holds
    this to the logged counters.
    """
    n = user.size
    imps, secs = np.zeros(n, dtype=np.int64), np.full(n, np.inf)
    rows = np.flatnonzero(user >= 0)
    if rows.size == 0:
        return {"imps": imps, "secs": secs}
    order = rows[np.lexsort((t_us[rows], user[rows]))]  # by user, then time
    u, t = user[order], t_us[order]
    pos = np.arange(order.size)
    new_user = np.r_[True, u[1:] != u[:-1]]
    first_of_user = np.maximum.accumulate(np.where(new_user, pos, 0))
    group = np.cumsum(new_user) - 1
    # Time as a dense rank so (group, time) packs into one sorted int64 key without overflow.
    times = np.sort(t_us[rows])
    times = times[np.r_[True, times[1:] != times[:-1]]]
    stride = times.size + 1
    key = group * stride + np.searchsorted(times, t)
    before_t = np.searchsorted(key, key, side="left")  # first row of the user at time >= t
    window_rank = np.searchsorted(times, t - window_us, side="left")
    before_window = np.searchsorted(key, group * stride + window_rank, side="left")
    imps[order] = before_t - before_window
    has_prev = before_t > first_of_user
    # true IEEE division, as add_user_counters and the online counters_as_of do (polars' `/`
    # can differ in the last bit, so it is not used for this column anywhere)
    gap = (t - t[np.maximum(before_t - 1, 0)]).astype(np.float64) / 1e6
    secs[order] = np.where(has_prev, gap, np.inf)
    return {"imps": imps, "secs": secs}
