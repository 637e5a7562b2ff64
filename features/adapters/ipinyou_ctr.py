"""The decoded iPinYou CTR sample (campaign 2997, 17 columns) → canonical columns.

The sample has no ids, prices or timestamps, so some columns are derived, by these rules:
- Ids: request and impression id are "ipinyou-ctr-<n>", n the 0-based data row number. There is
  no cookie, so user_id is null (and the user counters with it).
- Time: the file order is the time order (its "time-ordered hold-out" is its last rows), but its
  `hour` column is not monotone in file order, so no timestamp can honour both. File order wins:
  event_time is strictly increasing with the row number. The weekday/hour columns are used where
  that allows: row n gets the n-th smallest (weekday, hour) of the file, and the rows sharing an
  hour are spread evenly across it. So the file's hour and weekday histogram is exact and
  the date is real (week of Sunday 2013-10-20, iPinYou season 3, weekday 0 = Sunday, China
  time, stored in UTC), but a single row's hour is not its own `hour`.
- floor_price: `slotprice` is a bucket ("0", "1-10", "11-50", "51-100", "101+"); the floor is
  the bucket's lower bound, which keeps the buckets' order for a numeric feature. A bucket that
  cannot be read ("other", "null") gives a null floor.
- Campaign 2997 is mobile in-app (320x50 banners): channel "app", device type "mobile" for
  every row, whatever its user agent's OS. No auction or price columns: those stay null;
  conversion is 0 meaning "not observed".
- "other" is the sample's bucket for rare values: kept as a category string, except where the
  column is a number or an address (slot sizes, IP, slotprice), where it becomes null.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Final
from zoneinfo import ZoneInfo

import polars as pl

from features.adapters.ipinyou import REASON, common_columns, quoted, raw
from features.adapters.ipinyou import scrub as scrub_ipinyou

NAME: Final = "ipinyou_ctr"
ID_PREFIX: Final = "ipinyou-ctr-"
# Sunday 00:00 China time of the season-3 week; weekday w, hour h start at WEEK_START + w d + h h.
WEEK_START: Final = datetime(2013, 10, 20, tzinfo=ZoneInfo("Asia/Shanghai")).astimezone(UTC)
HOUR_US: Final = 3_600_000_000
RARE: Final = "other"

REQUIRED: Final = ("click", "weekday", "hour")
_SIGNATURE: Final = ("useragent", "slotprice", "weekday", "hour")


def detect(columns: Sequence[str]) -> bool:
    """The CTR sample has iPinYou's context columns but none of its ids."""
    return (
        all(c in columns for c in _SIGNATURE)
        and "bidid" not in columns
        and "impression_id" not in columns
    )


def _in_range(frame: pl.DataFrame, name: str, high: int) -> tuple[pl.Expr, pl.Expr]:
    """(value or null, reason or null) for an integer column that must lie in 0..high."""
    text = raw(frame, name).str.strip_chars()
    value = text.cast(pl.Int32, strict=False)
    ok = value.is_between(0, high)
    reason = (
        pl.when(text.is_null())
        .then(pl.lit(f"missing {name}"))
        .when(~ok)
        .then(pl.concat_str(pl.lit(f"{name} not 0-{high}: "), quoted(text)))
    )
    return pl.when(ok).then(value), reason


def _event_times(keys: pl.Series) -> pl.Series:
    """Strictly increasing times: row n (among rows with a key) gets the n-th smallest key."""
    rows = pl.DataFrame({"key": keys}).with_row_index("_row")
    valid = rows.filter(pl.col("key").is_not_null())
    slots = pl.DataFrame(
        {"_row": valid["_row"], "key": valid["key"].sort().cast(pl.Int64)}
    ).with_columns(
        (
            pl.col("key") * HOUR_US
            + pl.int_range(pl.len()).over("key") * HOUR_US // pl.len().over("key")
        ).alias("_us")
    )
    times = rows.join(slots.select("_row", "_us"), on="_row", how="left").sort("_row")
    start = pl.lit(WEEK_START, dtype=pl.Datetime("us", "UTC"))
    return times.select(start + pl.duration(microseconds=pl.col("_us"))).to_series()


def to_canonical(frame: pl.DataFrame) -> pl.DataFrame:
    """Canonical columns (numbers still as strings) plus the REASON column."""
    weekday, weekday_reason = _in_range(frame, "weekday", 6)
    hour, hour_reason = _in_range(frame, "hour", 23)
    keys = frame.select((weekday * 24 + hour).alias("key")).to_series()
    bucket = raw(frame, "slotprice").str.strip_chars()
    lower = bucket.str.extract(r"^([0-9]+)(?:-[0-9]+|\+)?$", 1)
    floor_reason = pl.when(bucket.is_not_null() & (bucket != RARE) & lower.is_null()).then(
        pl.concat_str(pl.lit("slotprice not a price bucket: "), quoted(bucket))
    )
    rare_to_null = [
        pl.when(pl.col(c) == RARE).then(None).otherwise(pl.col(c)).alias(c)
        for c in ("slot_width", "slot_height", "ip")
    ]
    return frame.select(
        _event_times(keys).alias("event_time"),
        pl.concat_str(pl.lit(ID_PREFIX), pl.int_range(pl.len()).cast(pl.String)).alias(
            "request_id"
        ),
        pl.lit(None, dtype=pl.String).alias("user_id"),
        pl.lit("app").alias("channel"),
        pl.lit("mobile").alias("device_type"),
        *common_columns(frame),
        lower.alias("floor_price"),
        pl.coalesce(weekday_reason, hour_reason, floor_reason).alias(REASON),
    ).with_columns(*rare_to_null, pl.col("request_id").alias("impression_id"))


def scrub(frame: pl.DataFrame) -> pl.DataFrame:
    """The raw rows with the IP masked, fit for a quarantine file."""
    return scrub_ipinyou(frame)
