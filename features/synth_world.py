"""The fixed world the synthetic generator samples from: publishers, placements, campaigns,
creatives, segments, geography, devices, and the hidden effects that make up the truth.

The world depends on the seed only, never on the row count, so `generate(10_000, seed=3)` and
`generate(1_000_000, seed=3)` describe the same market (same publishers, same creatives, same true
click rates): a small log is a sample of the big one. The effects are spread over many columns
and their interactions on purpose, so no single column carries most of the signal (as in real
display logs, where publisher, placement and creative ids hold much of it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np

from features.schema import CHANNELS, DEVICE_TYPES

# Share of traffic and number of publishers per channel (CHANNELS order).
CHANNEL_SHARE: Final = np.array([0.38, 0.30, 0.12, 0.09, 0.04, 0.07])
CHANNEL_PUBLISHERS: Final = (1400, 900, 300, 40, 200, 160)
# Click propensity per channel (logit offset): nobody clicks on a TV, email readers do.
CHANNEL_CTR: Final = np.array([0.0, 0.2, 0.3, -0.2, 0.4, -1.0])
CHANNEL_CPM: Final = np.array([1.6, 2.2, 8.0, 3.0, 1.0, 18.0])  # median market CPM

SLOT_FORMATS: Final = ("banner", "interstitial", "native", "video")
# P(slot format | channel), rows in CHANNELS order, columns in SLOT_FORMATS order.
CHANNEL_SLOT_FORMATS: Final = np.array(
    [
        [0.72, 0.00, 0.20, 0.08],
        [0.50, 0.25, 0.15, 0.10],
        [0.00, 0.00, 0.00, 1.00],
        [0.00, 0.00, 0.80, 0.20],
        [1.00, 0.00, 0.00, 0.00],
        [0.00, 0.00, 0.00, 1.00],
    ]
)
FORMAT_SIZES: Final = (
    ((300, 250), (728, 90), (320, 50), (160, 600), (300, 600), (970, 250)),
    ((320, 480), (480, 320), (768, 1024)),
    ((1200, 627), (1080, 1080), (600, 500)),
    ((640, 360), (1280, 720), (1920, 1080)),
)
VISIBILITY: Final = ("above_fold", "below_fold", "unknown")
VISIBILITY_CTR: Final = np.array([0.25, -0.25, 0.0])

CREATIVE_FORMATS: Final = ("static", "animated", "rich_media", "native", "video")
# Which creative formats each slot format accepts (indices into CREATIVE_FORMATS).
SLOT_ACCEPTS: Final = ((0, 1, 2), (0, 2, 4), (3,), (4,))

# P(device | channel), columns in DEVICE_TYPES order (desktop, mobile, tablet, ctv, other).
CHANNEL_DEVICES: Final = np.array(
    [
        [0.49, 0.42, 0.08, 0.00, 0.01],
        [0.00, 0.85, 0.15, 0.00, 0.00],
        [0.45, 0.44, 0.10, 0.00, 0.01],
        [0.20, 0.75, 0.05, 0.00, 0.00],
        [0.55, 0.40, 0.05, 0.00, 0.00],
        [0.00, 0.00, 0.00, 1.00, 0.00],
    ]
)
OSES: Final = ("windows", "macos", "linux", "android", "ios", "ipados", "roku", "tizen", "webos")
OS_BY_DEVICE: Final = {
    "desktop": ((0, 1, 2), (0.70, 0.25, 0.05)),
    "mobile": ((3, 4), (0.60, 0.40)),
    "tablet": ((5, 3), (0.60, 0.40)),
    "ctv": ((6, 7, 8, 3), (0.40, 0.25, 0.20, 0.15)),
    "other": ((2, 3), (0.5, 0.5)),
}
BROWSERS: Final = ("chrome", "safari", "firefox", "edge", "samsung")
# P(browser | os) for web traffic; in-app and ctv traffic has no browser (null).
OS_BROWSERS: Final = np.array(
    [
        [0.65, 0.00, 0.10, 0.25, 0.00],
        [0.45, 0.50, 0.05, 0.00, 0.00],
        [0.60, 0.00, 0.40, 0.00, 0.00],
        [0.82, 0.00, 0.03, 0.00, 0.15],
        [0.15, 0.85, 0.00, 0.00, 0.00],
        [0.10, 0.90, 0.00, 0.00, 0.00],
        [1.00, 0.00, 0.00, 0.00, 0.00],
        [1.00, 0.00, 0.00, 0.00, 0.00],
        [1.00, 0.00, 0.00, 0.00, 0.00],
    ]
)

EXCHANGES: Final = ("adx", "openx", "pubmatic", "magnite", "xandr", "index")
EXCHANGE_FIRST_PRICE: Final = np.array([0.9, 0.6, 0.7, 0.5, 0.45, 0.55])

# Country, traffic share, UTC offset (hours, whole-country approximation), price multiplier.
COUNTRIES: Final = (
    ("US", 0.38, -5, 1.35),
    ("GB", 0.10, 0, 1.15),
    ("DE", 0.08, 1, 1.10),
    ("FR", 0.06, 1, 1.00),
    ("CA", 0.05, -5, 1.10),
    ("BR", 0.07, -3, 0.55),
    ("IN", 0.08, 5, 0.35),
    ("JP", 0.06, 9, 1.05),
    ("AU", 0.04, 10, 1.05),
    ("MX", 0.05, -6, 0.50),
    ("ES", 0.03, 1, 0.80),
)
WEEKDAY_TRAFFIC: Final = np.array([1.0, 1.02, 1.03, 1.02, 0.98, 0.86, 0.84])  # Monday first

N_SEGMENTS: Final = 50
SEGMENTS_PER_USER_P: Final = np.array([0.14, 0.19, 0.2, 0.17, 0.13, 0.1, 0.07])  # 0..6
N_ADVERTISERS: Final = 8
DELAY_SPEED_SD: Final = 0.5  # log-sd of the advertisers' conversion speed
N_CAMPAIGNS: Final = 20

_STEMS: Final = (
    "news", "daily", "sport", "tech", "recipes", "travel", "auto", "finance", "games", "weather",
    "style", "music", "movies", "health", "home", "kids", "local", "science", "pets", "deals",
)  # fmt: skip
_TLDS: Final = ("com", "net", "org", "co.uk", "de", "io", "fr", "com.br")


def _hour_profile(peaks: tuple[tuple[float, float, float], ...], floor: float) -> np.ndarray:
    """Traffic by local hour as a floor plus Gaussian bumps (centre, width, height)."""
    h = np.arange(24, dtype=float)
    prof = np.full(24, floor)
    for centre, width, height in peaks:
        d = np.minimum(np.abs(h + 0.5 - centre), 24 - np.abs(h + 0.5 - centre))
        prof += height * np.exp(-(d**2) / (2 * width**2))
    return prof / prof.sum()


# Diurnal traffic per channel, by local hour: web at lunch and evening, email in the morning,
# ctv in prime time.
HOUR_TRAFFIC: Final = np.stack(
    [
        _hour_profile(((12.5, 3.0, 1.0), (20.5, 2.5, 1.1)), 0.12),
        _hour_profile(((8.0, 2.0, 0.6), (13.0, 3.0, 0.8), (21.5, 2.5, 1.4)), 0.10),
        _hour_profile(((13.0, 3.0, 0.7), (21.0, 2.5, 1.5)), 0.10),
        _hour_profile(((8.0, 2.0, 0.8), (12.5, 2.0, 0.9), (21.5, 2.5, 1.3)), 0.12),
        _hour_profile(((7.5, 1.5, 1.6), (17.5, 2.0, 0.6)), 0.08),
        _hour_profile(((20.5, 2.0, 2.0), (14.0, 3.0, 0.3)), 0.06),
    ]
)


@dataclass(frozen=True)
class World:
    """Entity tables (names, sampling weights) and their hidden effects on the truth."""

    # publishers
    pub_name: np.ndarray
    pub_channel: np.ndarray
    pub_weight: np.ndarray  # Zipf within its channel
    pub_ctr: np.ndarray
    pub_cvr: np.ndarray
    pub_price: np.ndarray
    pub_exchange: np.ndarray
    pub_first_placement: np.ndarray
    pub_format_ctr: np.ndarray  # publisher x creative format
    # placements (contiguous per publisher)
    pl_name: np.ndarray
    pl_pub: np.ndarray
    pl_cum: np.ndarray  # publisher index + cumulative weight within the publisher
    pl_format: np.ndarray
    pl_width: np.ndarray
    pl_height: np.ndarray
    pl_size_ctr: np.ndarray
    pl_visibility: np.ndarray
    pl_ctr: np.ndarray
    # campaigns and creatives
    adv_name: np.ndarray
    adv_value: np.ndarray  # median conversion value
    adv_seg_cvr: np.ndarray  # advertiser x segment
    cmp_name: np.ndarray
    cmp_adv: np.ndarray
    cmp_ctr: np.ndarray
    cmp_cvr: np.ndarray
    cmp_seg_ctr: np.ndarray  # campaign x segment
    cr_name: np.ndarray
    cr_cmp: np.ndarray
    cr_format: np.ndarray
    cr_weight: np.ndarray
    cr_ctr: np.ndarray
    cr_cvr: np.ndarray
    cr_seg_ctr: np.ndarray  # creative x segment
    # segments, time, devices, geography, exchanges
    seg_name: np.ndarray
    seg_pop: np.ndarray
    seg_ctr: np.ndarray
    channel_hour_ctr: np.ndarray  # channel x local hour
    channel_weekday_ctr: np.ndarray
    channel_format_ctr: np.ndarray  # channel x creative format
    device_os_ctr: np.ndarray
    device_cvr: np.ndarray
    browser_ctr: np.ndarray
    exchange_ctr: np.ndarray
    exchange_price: np.ndarray
    country_ctr: np.ndarray
    country_cvr: np.ndarray
    region_name: np.ndarray
    region_country: np.ndarray
    region_cum: np.ndarray
    region_ctr: np.ndarray
    city_name: np.ndarray
    city_region: np.ndarray
    city_cum: np.ndarray
    city_ctr: np.ndarray
    # conversion speed inside the attribution window (1 = the market's delay shape)
    adv_delay_speed: np.ndarray


def _cum_within(group: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """group + cumulative normalised weight within the group (rows sorted by group), so that
    `searchsorted(cum, g + u)` with u in [0, 1) samples a member of group g in one call."""
    total = np.bincount(group, weights=weight)
    starts = np.cumsum(total) - total
    within = (np.cumsum(weight) - starts[group]) / total[group]
    within[np.r_[group[1:] != group[:-1], True]] = 1.0  # exact group ends: no spill-over
    return group + within


def _publishers(rng: np.random.Generator) -> dict[str, np.ndarray]:
    chan = np.repeat(np.arange(len(CHANNELS)), CHANNEL_PUBLISHERS)
    n = chan.size
    weight = np.empty(n)
    names: list[str] = []
    for c, count in enumerate(CHANNEL_PUBLISHERS):
        rank = rng.permutation(count) + 1.0
        weight[chan == c] = rank**-1.05
    for i in range(n):
        stem, tld = _STEMS[i % len(_STEMS)], _TLDS[(i // 7) % len(_TLDS)]
        kind = CHANNELS[chan[i]]
        if kind in ("web", "video"):
            names.append(f"{stem}{i}.{tld}")
        elif kind == "app":
            names.append(f"com.{stem}{i}.app")
        elif kind == "ctv":
            names.append(f"tv.{stem}{i}.channel")
        elif kind == "social":
            names.append(f"{stem}{i}.social")
        else:
            names.append(f"newsletter.{stem}{i}.{tld}")
    ctr = rng.normal(0, 0.3, n)
    return {
        "pub_name": np.array(names),
        "pub_channel": chan,
        "pub_weight": weight,
        "pub_ctr": ctr,
        "pub_cvr": -0.35 * ctr + rng.normal(0, 0.25, n),  # click-bait converts worse
        "pub_price": 0.3 * ctr + rng.normal(0, 0.3, n),
        "pub_exchange": rng.integers(0, len(EXCHANGES), n),
        "pub_format_ctr": rng.normal(0, 0.2, (n, len(CREATIVE_FORMATS))),
    }


def _placements(rng: np.random.Generator, pub: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    n_pub = pub["pub_name"].size
    per_pub = np.minimum(rng.geometric(0.35, n_pub), 8)
    owner = np.repeat(np.arange(n_pub), per_pub)
    n = owner.size
    fmt = np.empty(n, dtype=np.int64)
    for c in range(len(CHANNELS)):
        rows = pub["pub_channel"][owner] == c
        fmt[rows] = rng.choice(len(SLOT_FORMATS), rows.sum(), p=CHANNEL_SLOT_FORMATS[c])
    sizes = [s for f in FORMAT_SIZES for s in f]
    size_ctr = rng.normal(0, 0.15, len(sizes))
    size_idx = np.empty(n, dtype=np.int64)
    offset = np.cumsum([0] + [len(f) for f in FORMAT_SIZES])
    for f in range(len(SLOT_FORMATS)):
        rows = fmt == f
        size_idx[rows] = offset[f] + rng.integers(0, len(FORMAT_SIZES[f]), rows.sum())
    ctv = pub["pub_channel"][owner] == CHANNELS.index("ctv")
    size_idx[ctv] = offset[3] + 2  # 1920x1080
    first = np.concatenate([[0], np.cumsum(per_pub)[:-1]])
    slot_no = np.arange(n) - first[owner]
    names = np.char.add(np.char.add(pub["pub_name"][owner], "/slot-"), slot_no.astype(str))
    return {
        "pl_name": names,
        "pl_pub": owner,
        "pl_cum": _cum_within(owner, rng.lognormal(0, 0.8, n)),
        "pl_format": fmt,
        "pl_width": np.array([sizes[i][0] for i in size_idx], dtype=np.int32),
        "pl_height": np.array([sizes[i][1] for i in size_idx], dtype=np.int32),
        "pl_size_ctr": size_ctr[size_idx],
        "pl_visibility": rng.choice(len(VISIBILITY), n, p=[0.45, 0.35, 0.2]),
        "pl_ctr": rng.normal(0, 0.2, n),
        "pub_first_placement": first,
    }


def _campaigns(rng: np.random.Generator) -> dict[str, np.ndarray]:
    cmp_adv = np.concatenate([np.arange(N_ADVERTISERS), rng.integers(0, N_ADVERTISERS, 12)])
    per_cmp = rng.integers(6, 15, N_CAMPAIGNS)
    cr_cmp = np.repeat(np.arange(N_CAMPAIGNS), per_cmp)
    n = cr_cmp.size
    cr_format = rng.choice(len(CREATIVE_FORMATS), n, p=[0.3, 0.2, 0.15, 0.2, 0.15])
    cr_format[: len(CREATIVE_FORMATS)] = np.arange(len(CREATIVE_FORMATS))  # every format exists
    cr_no = np.arange(n) - np.concatenate([[0], np.cumsum(per_cmp)[:-1]])[cr_cmp]
    cmp_name = np.array([f"cmp-{i + 1:03d}" for i in range(N_CAMPAIGNS)])
    # Sparse affinities: a campaign speaks to a few audiences (and bores or annoys a few);
    # each creative adds its own, smaller twist.
    cmp_aff = rng.normal(0.1, 0.6, (N_CAMPAIGNS, N_SEGMENTS))
    cmp_aff *= rng.random((N_CAMPAIGNS, N_SEGMENTS)) < 0.25
    aff = rng.normal(0.0, 0.35, (n, N_SEGMENTS)) * (rng.random((n, N_SEGMENTS)) < 0.15)
    adv_aff = rng.normal(0.2, 0.5, (N_ADVERTISERS, N_SEGMENTS))
    adv_aff *= rng.random((N_ADVERTISERS, N_SEGMENTS)) < 0.2
    return {
        "adv_name": np.array([f"adv-{i + 1:02d}" for i in range(N_ADVERTISERS)]),
        "adv_value": np.exp(rng.uniform(np.log(15), np.log(150), N_ADVERTISERS)),
        "adv_seg_cvr": adv_aff,
        "cmp_name": cmp_name,
        "cmp_adv": cmp_adv,
        "cmp_ctr": rng.normal(0, 0.2, N_CAMPAIGNS),
        "cmp_cvr": rng.normal(0, 0.5, N_CAMPAIGNS),
        "cmp_seg_ctr": cmp_aff,
        "cr_name": np.char.add(np.char.add(cmp_name[cr_cmp], "-cr"), cr_no.astype(str)),
        "cr_cmp": cr_cmp,
        "cr_format": cr_format,
        "cr_weight": rng.lognormal(0, 0.6, n) * rng.lognormal(0, 0.5, N_CAMPAIGNS)[cr_cmp],
        "cr_ctr": rng.normal(0, 0.4, n),
        "cr_cvr": rng.normal(0, 0.25, n),
        "cr_seg_ctr": aff,
    }


def _geography(rng: np.random.Generator) -> dict[str, np.ndarray]:
    n_c = len(COUNTRIES)
    per_country = rng.integers(4, 10, n_c)
    reg_country = np.repeat(np.arange(n_c), per_country)
    reg_no = np.arange(reg_country.size) - np.repeat(
        np.cumsum(per_country) - per_country, per_country
    )
    codes = np.array([c[0] for c in COUNTRIES])
    reg_name = np.char.add(np.char.add(codes[reg_country], "-"), (reg_no + 1).astype(str))
    per_region = rng.integers(2, 8, reg_country.size)
    city_region = np.repeat(np.arange(reg_country.size), per_region)
    city_name = np.char.add(
        np.char.add(reg_name[city_region], "-city"), np.arange(city_region.size).astype(str)
    )
    return {
        "country_ctr": rng.normal(0, 0.2, n_c),
        "country_cvr": rng.normal(0, 0.3, n_c),
        "region_name": reg_name,
        "region_country": reg_country,
        "region_cum": _cum_within(reg_country, rng.lognormal(0, 1.0, reg_country.size)),
        "region_ctr": rng.normal(0, 0.12, reg_country.size),
        "city_name": city_name,
        "city_region": city_region,
        "city_cum": _cum_within(city_region, rng.lognormal(0, 1.0, city_region.size)),
        "city_ctr": rng.normal(0, 0.12, city_region.size),
    }


def _channel_format_effects(rng: np.random.Generator) -> np.ndarray:
    """Channel x creative format, centred within each channel over the formats it can show,
    so the interaction does not double as a channel main effect."""
    eff = rng.normal(0, 0.3, (len(CHANNELS), len(CREATIVE_FORMATS)))
    for c in range(len(CHANNELS)):
        slots = np.flatnonzero(CHANNEL_SLOT_FORMATS[c] > 0)
        shown = sorted({f for s in slots for f in SLOT_ACCEPTS[s]})
        eff[c, shown] -= eff[c, shown].mean()
    return eff


def build_world(seed: int) -> World:
    """The market for one seed; every random draw here comes from this seed's world stream."""
    rng = np.random.default_rng([seed, 0x5EED])
    pub = _publishers(rng)
    parts = {**pub, **_placements(rng, pub), **_campaigns(rng), **_geography(rng)}
    hours = np.arange(24)
    amp = rng.uniform(0.2, 0.5, len(CHANNELS))[:, None]
    phase = rng.uniform(0, 24, len(CHANNELS))[:, None]
    parts["channel_hour_ctr"] = amp * np.cos(2 * np.pi * (hours[None, :] - phase) / 24)
    parts["channel_weekday_ctr"] = rng.normal(0, 0.1, (len(CHANNELS), 7))
    parts["channel_format_ctr"] = _channel_format_effects(rng)
    parts["device_os_ctr"] = rng.normal(0, 0.35, (len(DEVICE_TYPES), len(OSES)))
    parts["device_cvr"] = np.array([0.25, -0.1, 0.1, -0.6, -0.3])
    parts["browser_ctr"] = rng.normal(0, 0.1, len(BROWSERS))
    parts["exchange_ctr"] = rng.normal(0, 0.1, len(EXCHANGES))
    parts["exchange_price"] = rng.normal(0, 0.12, len(EXCHANGES))
    parts["seg_name"] = np.array([f"seg-{1001 + i}" for i in range(N_SEGMENTS)])
    parts["seg_pop"] = (rng.permutation(N_SEGMENTS) + 1.0) ** -0.7
    parts["seg_ctr"] = rng.normal(0, 0.1, N_SEGMENTS)
    # Drawn last, so that every other entity stays what it was before delays differed by
    # advertiser. An app install converts in minutes, a holiday in days: the exponent of
    # `synth_truth.conversion_delay_seconds`, centred so the market keeps its delay shape.
    speed = rng.normal(0, DELAY_SPEED_SD, N_ADVERTISERS)
    parts["adv_delay_speed"] = np.exp(speed - speed.mean())
    return World(**parts)
