"""The canonical impression-log schema every source is adapted to.

Modelled on the iPinYou RTB logs and OpenRTB 2.6. One row is one auction we took part in
(an impression opportunity), whether we won it or not. Prices are CPM (per 1000 impressions)
in the account currency, everywhere in bidopt: logs, features, bids and replies.
"""

from __future__ import annotations

from typing import Final

import polars as pl

PRICE_UNIT: Final = "CPM in the account currency (price per 1000 impressions)"

CHANNELS: Final = ("web", "app", "video", "social", "email", "ctv")
AUCTION_TYPES: Final = ("first", "second")
DEVICE_TYPES: Final = ("desktop", "mobile", "tablet", "ctv", "other")

TIME = pl.Datetime("us", "UTC")

# Column name -> polars dtype. Order is the canonical column order of every stored log.
SCHEMA: Final[dict[str, pl.DataType]] = {
    "event_time": TIME,
    "request_id": pl.String(),
    "impression_id": pl.String(),
    "user_id": pl.String(),  # hashed upstream; never a raw cookie
    "channel": pl.String(),  # one of CHANNELS
    "exchange": pl.String(),
    "publisher": pl.String(),  # site domain or app bundle
    "placement_id": pl.String(),
    "slot_width": pl.Int32(),
    "slot_height": pl.Int32(),
    "slot_visibility": pl.String(),
    "slot_format": pl.String(),
    "device_type": pl.String(),  # one of DEVICE_TYPES
    "os": pl.String(),
    "browser": pl.String(),
    "ip": pl.String(),  # anonymised on ingestion to features.ipanon.IPV4_PREFIX / IPV6_PREFIX
    "country": pl.String(),
    "region": pl.String(),
    "city": pl.String(),
    "user_segments": pl.List(pl.String()),  # DMP segment ids
    "advertiser_id": pl.String(),
    "campaign_id": pl.String(),
    "creative_id": pl.String(),
    "floor_price": pl.Float64(),
    "bid_price": pl.Float64(),
    "won": pl.Boolean(),
    "paying_price": pl.Float64(),  # what we paid when won; null when lost
    "market_price": pl.Float64(),  # highest competing bid when known (synthetic, won 2nd price)
    "auction_type": pl.String(),  # one of AUCTION_TYPES
    "click": pl.Int8(),
    "click_time": TIME,
    "conversion": pl.Int8(),
    "conversion_value": pl.Float64(),
    "conversion_time": TIME,
    # User frequency/recency counters, as of the impression (strictly earlier events only).
    "user_imps_24h": pl.Int32(),
    "user_clicks_24h": pl.Int32(),
    "user_imps_7d": pl.Int32(),
    "user_clicks_7d": pl.Int32(),
    "user_secs_since_last_imp": pl.Float64(),  # null when the user was never seen before
}

# Present only in synthetic logs: the generator's ground truth, used to score models and bids.
TRUTH_SCHEMA: Final[dict[str, pl.DataType]] = {
    "true_ctr": pl.Float64(),
    "true_cvr": pl.Float64(),
}

# A row without these cannot be used at all; every other column may be null.
REQUIRED: Final = ("event_time", "impression_id", "channel", "click")

PRICE_COLUMNS: Final = ("floor_price", "bid_price", "paying_price", "market_price")
COUNTER_COLUMNS: Final = (
    "user_imps_24h",
    "user_clicks_24h",
    "user_imps_7d",
    "user_clicks_7d",
    "user_secs_since_last_imp",
)

# The fields a bidder sends per impression: everything known before the auction.
REQUEST_FIELDS: Final = (
    "event_time",
    "channel",
    "exchange",
    "publisher",
    "placement_id",
    "slot_width",
    "slot_height",
    "slot_visibility",
    "slot_format",
    "device_type",
    "os",
    "browser",
    "ip",
    "country",
    "region",
    "city",
    "user_segments",
    "advertiser_id",
    "campaign_id",
    "creative_id",
    "floor_price",
    "auction_type",
    *COUNTER_COLUMNS,
)


def empty_frame(with_truth: bool = False) -> pl.DataFrame:
    """An empty frame with the canonical schema, for sources that lack some columns."""
    schema = {**SCHEMA, **(TRUTH_SCHEMA if with_truth else {})}
    return pl.DataFrame(schema=schema)


def conform(df: pl.DataFrame) -> pl.DataFrame:
    """Add missing optional columns as nulls and order columns canonically.

    Casting is strict on purpose: a wrong type is a validation error for ingest to report,
    not something to coerce silently here.
    """
    extra = [c for c in TRUTH_SCHEMA if c in df.columns]
    exprs = []
    for name, dtype in SCHEMA.items():
        if name in df.columns:
            exprs.append(pl.col(name).cast(dtype, strict=True))
        else:
            exprs.append(pl.lit(None, dtype=dtype).alias(name))
    exprs.extend(pl.col(c).cast(TRUTH_SCHEMA[c]) for c in extra)
    return df.select(exprs)
