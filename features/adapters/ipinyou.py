"""The raw iPinYou RTB impression log (27 columns, make-ipinyou-data output) → canonical columns.

Mapping decisions, so that a reader of a trained model knows what its columns mean:
- `timestamp` (yyyyMMddHHmmssSSS) is local time in China (iPinYou's servers, UTC+8 without
  daylight saving); it is read as Asia/Shanghai and stored in UTC like every canonical time.
- `bidid` is both request and impression id (one impression per bid request in this log).
- `ipinyouid` is a cookie: it becomes a SHA-256 pseudonym here and is never kept raw.
- `useragent` is "os_browser" (e.g. "windows_chrome"); android/ios mean a mobile device,
  anything else a desktop. Season 3 is display on (desktop and mobile) web: channel "web".
- Every row has logtype 1, an impression: the auction was won, at the second price `payprice`,
  which is also the market price (the highest competing bid). Prices stay in iPinYou's unit
  (CPM in Chinese fen), which is then the account currency. The log holds no conversions, so
  `conversion` is 0 meaning "not observed": do not train pCVR on it.
- iPinYou writes "null" for a missing value; it becomes a real null. "Na" and "other" are kept
  as category values.
Numbers are handed over as strings: ingestion parses and validates every column the same way
for all sources, so a bad price is reported by the same rule whichever source it came from.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import polars as pl

from features.ipanon import anonymise_ip_series, pseudonymise_series

NAME: Final = "ipinyou"
REASON: Final = "_reason"  # adapter-level reason a row is unusable, null when it is fine
SOURCE_TZ: Final = "Asia/Shanghai"
USER_NAMESPACE: Final = "ipinyou"  # pseudonyms of ipinyouid: shared by every iPinYou file
NULL_MARKERS: Final = ("", "null")
MOBILE_OS: Final = ("android", "ios")
COUNTRY: Final = "CN"

REQUIRED: Final = ("bidid", "timestamp", "click")
_SIGNATURE: Final = ("bidid", "ipinyouid", "payprice", "logtype")


def detect(columns: Sequence[str]) -> bool:
    """A raw iPinYou log names its columns after iPinYou's fields, not canonical ones."""
    return "impression_id" not in columns and any(c in columns for c in _SIGNATURE)


def raw(frame: pl.DataFrame, name: str) -> pl.Expr:
    """Column `name` as a string with iPinYou's null markers turned into nulls."""
    if name not in frame.columns:
        return pl.lit(None, dtype=pl.String)
    text = pl.col(name).cast(pl.String)
    return pl.when(text.str.strip_chars().is_in(NULL_MARKERS)).then(None).otherwise(text)


def quoted(expr: pl.Expr) -> pl.Expr:
    """A raw value as it appears in a quarantine reason: quoted and kept to one short line."""
    short = expr.str.replace_all(r"[\r\n]", " ").str.slice(0, 60)
    return pl.concat_str(pl.lit("'"), short, pl.lit("'"))


def user_agent_columns(frame: pl.DataFrame) -> list[pl.Expr]:
    """os and browser from iPinYou's "os_browser" user agent."""
    parts = raw(frame, "useragent").str.splitn("_", 2)
    return [
        parts.struct.field("field_0").alias("os"),
        parts.struct.field("field_1").alias("browser"),
    ]


def common_columns(frame: pl.DataFrame) -> list[pl.Expr]:
    """Columns both iPinYou formats share, under their canonical names."""
    return [
        raw(frame, "adexchange").alias("exchange"),
        raw(frame, "domain").alias("publisher"),
        raw(frame, "slotid").alias("placement_id"),
        raw(frame, "slotwidth").alias("slot_width"),
        raw(frame, "slotheight").alias("slot_height"),
        raw(frame, "slotvisibility").alias("slot_visibility"),
        raw(frame, "slotformat").alias("slot_format"),
        *user_agent_columns(frame),
        raw(frame, "IP").alias("ip"),
        pl.lit(COUNTRY).alias("country"),
        raw(frame, "region").alias("region"),
        raw(frame, "city").alias("city"),
        raw(frame, "advertiser").alias("advertiser_id"),
        raw(frame, "advertiser").alias("campaign_id"),  # one campaign per advertiser in iPinYou
        raw(frame, "creative").alias("creative_id"),
        raw(frame, "click").alias("click"),
        pl.lit(0, dtype=pl.Int8).alias("conversion"),
    ]


def to_canonical(frame: pl.DataFrame) -> pl.DataFrame:
    """Canonical columns (numbers still as strings) plus the REASON column."""
    stamp = raw(frame, "timestamp").str.strip_chars()
    parsed = (
        stamp.str.strptime(pl.Datetime("ms"), "%Y%m%d%H%M%S%3f", strict=False)
        .dt.replace_time_zone(SOURCE_TZ)
        .dt.convert_time_zone("UTC")
        .dt.cast_time_unit("us")
    )
    well_formed = stamp.str.contains(r"^[0-9]{17}$") & parsed.is_not_null()
    logtype = raw(frame, "logtype").str.strip_chars()
    os = raw(frame, "useragent").str.splitn("_", 2).struct.field("field_0")
    reason = (
        pl.when(stamp.is_not_null() & ~well_formed)
        .then(pl.concat_str(pl.lit("timestamp not yyyyMMddHHmmssSSS: "), quoted(stamp)))
        .when(logtype.is_not_null() & (logtype != "1"))
        .then(pl.concat_str(pl.lit("logtype not 1 (impression): "), quoted(logtype)))
    )
    out = frame.select(
        pl.when(well_formed).then(parsed).alias("event_time"),
        raw(frame, "bidid").alias("request_id"),
        raw(frame, "bidid").alias("impression_id"),
        raw(frame, "ipinyouid").alias("user_id"),
        pl.lit("web").alias("channel"),
        pl.when(os.is_in(MOBILE_OS))
        .then(pl.lit("mobile"))
        .when(os.is_not_null())
        .then(pl.lit("desktop"))
        .alias("device_type"),
        *common_columns(frame),
        raw(frame, "usertag").alias("user_segments"),  # comma-separated; ingest splits it
        raw(frame, "slotprice").alias("floor_price"),
        raw(frame, "bidprice").alias("bid_price"),
        pl.lit(True).alias("won"),
        raw(frame, "payprice").alias("paying_price"),
        raw(frame, "payprice").alias("market_price"),
        pl.lit("second").alias("auction_type"),
        reason.alias(REASON),
    )
    return out.with_columns(pseudonymise_series(out["user_id"], USER_NAMESPACE))


def scrub(frame: pl.DataFrame) -> pl.DataFrame:
    """The raw rows with the cookie pseudonymised and the IP masked, fit for a quarantine file.

    An IP that is not an address is kept as written so that its reason can be checked.
    """
    out = frame
    if "ipinyouid" in frame.columns:
        cookie = frame.select(raw(frame, "ipinyouid")).to_series()
        out = out.with_columns(pseudonymise_series(cookie, USER_NAMESPACE).alias("ipinyouid"))
    if "IP" in frame.columns:
        text = frame["IP"].cast(pl.String)
        out = out.with_columns(anonymise_ip_series(text).fill_null(text).alias("IP"))
    return out
