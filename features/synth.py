"""Seeded synthetic ad logs that carry their own truth: bidopt's embedded default data.

Each row is one auction in the canonical schema, plus `true_ctr` (the click probability had the
impression been shown) and `true_cvr` (the conversion probability given a click), so models and
bids can be scored against the truth rather than only against noisy labels. The log behaves like
a real one where it matters for training: clicks and conversions exist only on won rows,
conversions arrive hours to days after the click and those after the data cut-off are missing,
and user counters are computed as of each impression with `features.profiles`.

Everything is vectorised: the cost is a few dozen numpy/polars passes over the rows, so a million
rows take seconds, not minutes.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

import numpy as np
import polars as pl

from features import synth_world as sw
from features.profiles import add_user_counters
from features.schema import CHANNELS, COUNTER_COLUMNS, DEVICE_TYPES, TIME, conform
from features.synth_truth import (
    USER_CTR_SD,
    Rows,
    auction,
    conversion_delay_seconds,
    ctr_logit,
    cvr_logit,
    recent_impressions,
    sigmoid,
)

DEFAULT_START: Final = datetime(2024, 3, 4, tzinfo=UTC)  # a Monday
STEPS: Final = ("users", "impressions", "fatigue", "auctions", "outcomes", "counters", "frame")
ROWS_PER_USER: Final = 6  # mean; the per-user count is heavy-tailed
ANONYMOUS_SHARE: Final = 0.03  # requests without a user id (no cookie, no device id)
IPV6_SHARE: Final = 0.12
MAX_SEGMENTS: Final = 6
US_PER_HOUR: Final = 3_600_000_000
# First octets of /8s holding no private, loopback, link-local, CGNAT or documentation range.
PUBLIC_FIRST_OCTETS: Final = np.setdiff1d(np.arange(11, 224), [100, 127, 169, 172, 192, 198, 203])
NO_BROWSER: Final = (CHANNELS.index("app"), CHANNELS.index("ctv"))  # in-app: no browser

StepHook = Callable[[str], None]


def generate(
    rows: int,
    seed: int = 0,
    start: datetime | None = None,
    days: int = 14,
    *,
    on_step: StepHook | None = None,
    part: int = 0,
) -> pl.DataFrame:
    """`rows` auctions over `days` days from `start` (UTC), canonical schema plus the truth.

    The same seed gives the same frame; the same seed with more rows samples the same market
    (publishers, creatives and their true rates), only with more traffic and users. `on_step`
    is called with each name in STEPS as work starts, for progress display.

    `part` k > 0 draws another group of users and their traffic from the same market (same
    world, same truth; part 0 is the frame above): a log of any size is the union of parts
    generated one at a time (`features.synth_parts`). A user belongs to one part, so fatigue
    and the as-of user counters, computed per part, are those of the whole log.
    """
    _check_int("rows", rows, 1)
    _check_int("days", days, 1)
    _check_int("seed", seed, 0)
    _check_int("part", part, 0)
    begin = DEFAULT_START if start is None else start
    begin = begin.replace(tzinfo=UTC) if begin.tzinfo is None else begin.astimezone(UTC)
    rows, days, seed = int(rows), int(days), int(seed)
    hook = on_step or (lambda _step: None)

    world = sw.build_world(seed)
    rng = np.random.default_rng([seed, 0xAD] if part == 0 else [seed, 0xAD, int(part)])
    hook("users")
    users = _users(rng, world, max(50, rows // ROWS_PER_USER))
    hook("impressions")
    r = _impressions(rng, world, users, rows, begin, days)
    hook("fatigue")
    anonymous_or_user = np.where(r["anonymous"], -1, r["user"])
    recent = recent_impressions(anonymous_or_user, r["t_us"], 24 * US_PER_HOUR)
    hook("auctions")
    ctr_z = ctr_logit(world, r, recent["imps"], recent["secs"])
    ctr, cvr = sigmoid(ctr_z), sigmoid(cvr_logit(world, r))
    prices = auction(world, r, ctr_z, rng)
    hook("outcomes")
    out = _outcomes(rng, world, r, prices["won"], ctr, cvr, begin, days)
    hook("counters")
    clicked = pl.Series(out["click"])
    counters = add_user_counters(
        pl.DataFrame(
            {
                "user_id": pl.Series(anonymous_or_user).replace(-1, None),
                "event_time": pl.Series(r["t_us"]).cast(TIME),
                "click": clicked,
                "click_time": pl.Series(out["click_t_us"]).cast(TIME),
                "won": pl.Series(prices["won"]).cast(pl.Boolean),
            }
        ).with_columns(click_time=pl.when(clicked == 1).then("click_time"))
    ).select(COUNTER_COLUMNS)
    hook("frame")
    frame = _frame(rng, world, users, r, prices, out)
    return conform(frame.with_columns(counters, true_ctr=pl.Series(ctr), true_cvr=pl.Series(cvr)))


def _check_int(name: str, value: object, minimum: int) -> None:
    """Refuse bools, floats and strings as counts, naming the argument."""
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if not ok or int(value) < minimum:  # type: ignore[call-overload]
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def write_parquet(df: pl.DataFrame, path: Path) -> None:
    """Parquet with fast zstd: level 1 writes a million rows about twice as fast as the default
    level for a file only a few percent larger."""
    df.write_parquet(path, compression="zstd", compression_level=1)


def _epoch_us(ts: datetime) -> int:
    """Microseconds since the epoch, exactly (no float round trip)."""
    return (ts - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def _hex_ids(rng: np.random.Generator, n: int, nbytes: int) -> np.ndarray:
    """Random hex ids, vectorised: one bytes draw, hex-encoded and cut into fixed widths."""
    return np.frombuffer(rng.bytes(n * nbytes).hex().encode(), dtype=f"S{2 * nbytes}")


def _users(rng: np.random.Generator, w: sw.World, n: int) -> dict[str, np.ndarray]:
    """Stable per-user traits: activity, home geography, devices, DMP segments, IP, propensity."""
    shares = np.array([c[1] for c in sw.COUNTRIES])
    country = rng.choice(len(shares), n, p=shares / shares.sum())
    region = np.searchsorted(w.region_cum, country + rng.random(n))
    city = np.searchsorted(w.city_cum, region + rng.random(n))
    # Segments without replacement by popularity (Gumbel top-k), 0..6 per user.
    keys = np.log(w.seg_pop)[None, :] + rng.gumbel(size=(n, sw.N_SEGMENTS))
    top = np.argpartition(-keys, MAX_SEGMENTS, axis=1)[:, :MAX_SEGMENTS]
    top = np.take_along_axis(top, np.argsort(-np.take_along_axis(keys, top, 1), axis=1), 1)
    count = rng.choice(MAX_SEGMENTS + 1, n, p=sw.SEGMENTS_PER_USER_P)
    segs = np.sort(np.where(np.arange(MAX_SEGMENTS)[None, :] < count[:, None], top, -1), axis=1)
    os = np.empty((n, len(DEVICE_TYPES)), dtype=np.int64)
    browser = np.empty_like(os)
    browser_cum = np.cumsum(sw.OS_BROWSERS, axis=1)
    for d, name in enumerate(DEVICE_TYPES):
        choices, p = sw.OS_BY_DEVICE[name]
        os[:, d] = np.asarray(choices)[rng.choice(len(choices), n, p=p)]
        pick = (rng.random(n)[:, None] > browser_cum[os[:, d]]).sum(axis=1)
        browser[:, d] = np.minimum(pick, len(sw.BROWSERS) - 1)
    user_ctr = rng.normal(0, 1, n)
    return {
        "activity": rng.lognormal(0, 1.4, n),
        "country": country,
        "region": region,
        "city": city,
        "segments": segs,
        "os": os,
        "browser": browser,
        "user_ctr": USER_CTR_SD * user_ctr,
        "user_cvr": 0.15 * user_ctr + rng.normal(0, 0.25, n),
        "ipv6": rng.random(n) < IPV6_SHARE,
        "ip_octets": np.column_stack(
            [rng.choice(PUBLIC_FIRST_OCTETS, n), rng.integers(0, 256, (n, 2))]
        ),
        "ip6_group": rng.integers(0, 0x10000, n),
        "user_id": _hex_ids(rng, n, 8),
    }


def _by_group(
    group: np.ndarray, n_groups: int, pick: Callable[[int, int], np.ndarray]
) -> np.ndarray:
    """Fill out[group == g] with pick(g, count) for each g: one vectorised draw per group."""
    out = np.empty(group.size, dtype=np.int64)
    for g in range(n_groups):
        rows = np.flatnonzero(group == g)
        out[rows] = pick(g, rows.size)
    return out


def _impressions(
    rng: np.random.Generator,
    w: sw.World,
    users: dict[str, np.ndarray],
    n: int,
    begin: datetime,
    days: int,
) -> Rows:
    """Who saw what, where and when, sorted by event time; prices and outcomes come later."""
    n_ch = len(CHANNELS)
    channel = rng.choice(n_ch, n, p=sw.CHANNEL_SHARE / sw.CHANNEL_SHARE.sum())
    members = [np.flatnonzero(w.pub_channel == c) for c in range(n_ch)]

    def pick_pub(c: int, k: int) -> np.ndarray:
        p = w.pub_weight[members[c]]
        return members[c][rng.choice(p.size, k, p=p / p.sum())]

    pub = _by_group(channel, n_ch, pick_pub)
    placement = np.searchsorted(w.pl_cum, pub + rng.random(n))
    user = rng.choice(users["activity"].size, n, p=users["activity"] / users["activity"].sum())
    n_dev = len(DEVICE_TYPES)
    device = _by_group(channel, n_ch, lambda c, k: rng.choice(n_dev, k, p=sw.CHANNEL_DEVICES[c]))
    country = users["country"][user]
    # Local time: day by weekday traffic, hour by the channel's diurnal curve; then to UTC.
    weekday0 = begin.weekday()
    day_p = sw.WEEKDAY_TRAFFIC[(weekday0 + np.arange(days)) % 7]
    local_day = rng.choice(days, n, p=day_p / day_p.sum())
    local_hour = _by_group(channel, n_ch, lambda c, k: rng.choice(24, k, p=sw.HOUR_TRAFFIC[c]))
    tz = np.array([c[2] for c in sw.COUNTRIES])[country]
    in_hour = (rng.random(n) * US_PER_HOUR).astype(np.int64)
    span = days * 24 * US_PER_HOUR
    t_us = ((local_day * 24 + local_hour - tz) * US_PER_HOUR + in_hour) % span + _epoch_us(begin)
    exchange = np.where(rng.random(n) < 0.7, w.pub_exchange[pub], rng.integers(0, 6, n))
    slot_format = w.pl_format[placement]

    def pick_creative(f: int, k: int) -> np.ndarray:
        fits = np.flatnonzero(np.isin(w.cr_format, sw.SLOT_ACCEPTS[f]))
        p = w.cr_weight[fits]
        return fits[rng.choice(fits.size, k, p=p / p.sum())]

    r: Rows = {
        "t_us": t_us,
        "channel": channel,
        "publisher": pub,
        "placement": placement,
        "user": user,
        "anonymous": rng.random(n) < ANONYMOUS_SHARE,
        "device": device,
        "local_hour": local_hour,
        "local_wd": (weekday0 + local_day) % 7,
        "exchange": exchange,
        "first_price": rng.random(n) < sw.EXCHANGE_FIRST_PRICE[exchange],
        "creative": _by_group(slot_format, len(sw.SLOT_FORMATS), pick_creative),
    }
    order = np.argsort(t_us, kind="stable")
    r = {k: v[order] for k, v in r.items()}
    u = r["user"]
    r["country"], r["region"], r["city"] = users["country"][u], users["region"][u], users["city"][u]
    r["os"] = users["os"][u, r["device"]]
    web_like = ~np.isin(r["channel"], NO_BROWSER)
    r["browser"] = np.where(web_like, users["browser"][u, r["device"]], -1)
    r["segments"] = np.where(r["anonymous"][:, None], -1, users["segments"][u])
    r["user_ctr"], r["user_cvr"] = users["user_ctr"][u], users["user_cvr"][u]
    return r


def _outcomes(
    rng: np.random.Generator,
    w: sw.World,
    r: Rows,
    won: np.ndarray,
    ctr: np.ndarray,
    cvr: np.ndarray,
    begin: datetime,
    days: int,
) -> Rows:
    """Clicks and conversions, observable only on won rows and only before the data cut-off."""
    n = ctr.size
    click = won & (rng.random(n) < ctr)
    click_delay = np.clip(rng.lognormal(np.log(20.0), 1.0, n), 1.0, 1800.0)
    click_t = r["t_us"] + (click_delay * 1e6).astype(np.int64)
    converts = click & (rng.random(n) < cvr)
    adv = w.cmp_adv[w.cr_cmp[r["creative"]]]
    delay = conversion_delay_seconds(rng, n, w.adv_delay_speed[adv])
    conv_t = click_t + (delay * 1e6).astype(np.int64)
    cutoff = _epoch_us(begin) + days * 24 * US_PER_HOUR  # later conversions are not logged
    conversion = converts & (conv_t < cutoff)
    value = np.round(w.adv_value[adv] * rng.lognormal(0, 0.6, n), 2)
    return {
        "click": click.astype(np.int8),
        "click_t_us": np.where(click, click_t, 0),  # nulled where there is no click
        "conversion": conversion.astype(np.int8),
        "conv_t_us": np.where(conversion, conv_t, 0),
        "value": np.maximum(value, 0.01),
    }


def _gather(
    table: pl.Series, idx: np.ndarray, missing: np.ndarray | None = None, fill: object = None
) -> pl.Series:
    """Per-row values of an entity table; rows flagged `missing` get `fill`."""
    if missing is None:
        return table.gather(idx)
    padded = pl.concat([table, pl.Series([fill], dtype=table.dtype)])
    return padded.gather(np.where(missing, table.len(), idx))


def _names(names: np.ndarray, idx: np.ndarray, missing: np.ndarray | None = None) -> pl.Series:
    return _gather(pl.Series(names, dtype=pl.String), idx, missing)


def _user_columns(w: sw.World, users: dict[str, np.ndarray]) -> pl.DataFrame:
    """Per-user string columns, built once per user and then gathered per row."""
    seg_names = np.append(w.seg_name, "")[users["segments"]]  # "" pads the unused slots
    segs = pl.DataFrame({f"s{k}": seg_names[:, k] for k in range(MAX_SEGMENTS)})
    a, b, c = users["ip_octets"].T
    v4 = pl.DataFrame({"a": a, "b": b, "c": c}).select(pl.format("{}.{}.{}.0", "a", "b", "c"))
    group = users["ip6_group"]
    v6 = pl.Series(np.where(group == 0, "2001:db8::", np.char.mod("2001:db8:%x::", group)))
    return pl.DataFrame(
        {
            "user_id": pl.Series(users["user_id"]).cast(pl.String),
            "user_segments": segs.select(
                pl.concat_list(pl.all().replace("", None)).list.drop_nulls()
            ).to_series(),
            "ip": v6.zip_with(pl.Series(users["ipv6"]), v4.to_series()),
        }
    )


def _frame(
    rng: np.random.Generator,
    w: sw.World,
    users: dict[str, np.ndarray],
    r: Rows,
    prices: Rows,
    out: Rows,
) -> pl.DataFrame:
    """Assemble the canonical columns; `conform` then fixes their order and dtypes."""
    n = r["t_us"].size
    u = r["user"]
    anon = r["anonymous"]
    per_user = _user_columns(w, users)
    request_id = pl.Series(_hex_ids(rng, n, 12)).cast(pl.String)
    pl_idx, cr = r["placement"], r["creative"]
    cmp = w.cr_cmp[cr]
    won = prices["won"]
    df = pl.DataFrame(
        [
            pl.Series("event_time", r["t_us"]).cast(TIME),
            request_id.alias("request_id"),
            (request_id + "-1").alias("impression_id"),
            _gather(per_user["user_id"], u, anon),
            _names(np.array(CHANNELS), r["channel"]).alias("channel"),
            _names(np.array(sw.EXCHANGES), r["exchange"]).alias("exchange"),
            _names(w.pub_name, r["publisher"]).alias("publisher"),
            _names(w.pl_name, pl_idx).alias("placement_id"),
            pl.Series("slot_width", w.pl_width[pl_idx]),
            pl.Series("slot_height", w.pl_height[pl_idx]),
            _names(np.array(sw.VISIBILITY), w.pl_visibility[pl_idx]).alias("slot_visibility"),
            _names(np.array(sw.SLOT_FORMATS), w.pl_format[pl_idx]).alias("slot_format"),
            _names(np.array(DEVICE_TYPES), r["device"]).alias("device_type"),
            _names(np.array(sw.OSES), r["os"]).alias("os"),
            _names(np.array(sw.BROWSERS), r["browser"], r["browser"] < 0).alias("browser"),
            _gather(per_user["ip"], u).alias("ip"),  # anonymous requests still have an IP
            _names(np.array([c[0] for c in sw.COUNTRIES]), r["country"]).alias("country"),
            _names(w.region_name, r["region"]).alias("region"),
            _names(w.city_name, r["city"]).alias("city"),
            _gather(per_user["user_segments"], u, anon, []),
            _names(w.adv_name, w.cmp_adv[cmp]).alias("advertiser_id"),
            _names(w.cmp_name, cmp).alias("campaign_id"),
            _names(w.cr_name, cr).alias("creative_id"),
            pl.Series("floor_price", prices["floor_price"]),
            pl.Series("bid_price", prices["bid_price"]),
            pl.Series("won", won),
            pl.Series("paying_price", prices["paying_price"]),
            pl.Series("market_price", prices["market_price"]),
            _names(np.array(["second", "first"]), r["first_price"].astype(np.int64)).alias(
                "auction_type"
            ),
            pl.Series("click", out["click"]),
            pl.Series("click_time", out["click_t_us"]).cast(TIME),
            pl.Series("conversion", out["conversion"]),
            pl.Series("conversion_value", out["value"]),
            pl.Series("conversion_time", out["conv_t_us"]).cast(TIME),
        ]
    )
    return df.with_columns(
        paying_price=pl.when("won").then("paying_price"),
        click_time=pl.when(pl.col("click") == 1).then("click_time"),
        conversion_value=pl.when(pl.col("conversion") == 1).then("conversion_value"),
        conversion_time=pl.when(pl.col("conversion") == 1).then("conversion_time"),
    )
