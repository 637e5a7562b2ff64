"""User frequency/recency counters, defined once for logs (as-of) and for serving.

In logs they are computed strictly from events earlier than each impression, so a model never
sees its own future: an impression's own click cannot leak into its `user_clicks_24h`. A click
counts from its click time, not from the time of the impression it belongs to. At serving time the
same numbers arrive as request fields (from the caller or the profile store).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Final

import polars as pl

WINDOWS: Final = {"24h": timedelta(hours=24), "7d": timedelta(days=7)}
COUNTER_COLUMNS: Final = (
    "user_imps_24h",
    "user_clicks_24h",
    "user_imps_7d",
    "user_clicks_7d",
    "user_secs_since_last_imp",
)


def _count_before(events: pl.DataFrame, queries: pl.DataFrame, shift: timedelta) -> pl.Series:
    """Per query (user_id, t): how many of the user's events happened strictly before t - shift."""
    ev = (
        events.sort("user_id", "time")
        .with_columns(_n=pl.int_range(1, pl.len() + 1).over("user_id").cast(pl.Int64))
        .sort("time")
    )
    q = queries.with_columns(_q=pl.col("time") - shift).sort("_q")
    joined = q.join_asof(
        ev.select("user_id", pl.col("time").alias("_q"), "_n"),
        on="_q",
        by="user_id",
        strategy="backward",
        allow_exact_matches=False,
        check_sortedness=False,
    )
    return joined.sort("_row").get_column("_n").fill_null(0)


def add_user_counters(df: pl.DataFrame) -> pl.DataFrame:
    """Return `df` with the five counter columns computed as of each row's event_time.

    Rows without a user_id get nulls: an anonymous impression has no history.
    """
    base = df.with_row_index("_row")
    known = base.filter(pl.col("user_id").is_not_null())
    queries = known.select("_row", "user_id", pl.col("event_time").alias("time"))
    imps = known.select("user_id", pl.col("event_time").alias("time"))
    clicks = known.filter((pl.col("click") == 1) & pl.col("click_time").is_not_null()).select(
        "user_id", pl.col("click_time").alias("time")
    )
    cols: dict[str, pl.Series] = {}
    imps_now = _count_before(imps, queries, timedelta(0))
    clicks_now = _count_before(clicks, queries, timedelta(0))
    for label, width in WINDOWS.items():
        cols[f"user_imps_{label}"] = imps_now - _count_before(imps, queries, width)
        cols[f"user_clicks_{label}"] = clicks_now - _count_before(clicks, queries, width)
    last = (
        queries.sort("time")
        .join_asof(
            imps.sort("time").with_columns(_last=pl.col("time")),
            on="time",
            by="user_id",
            strategy="backward",
            allow_exact_matches=False,
            check_sortedness=False,
        )
        .sort("_row")
    )
    secs = (last["time"] - last["_last"]).dt.total_microseconds().cast(pl.Float64) / 1e6
    counters = queries.select("_row").with_columns(
        *(pl.Series(k, v).cast(pl.Int32) for k, v in cols.items()),
        secs.alias("user_secs_since_last_imp"),
    )
    out = base.drop([c for c in COUNTER_COLUMNS if c in base.columns]).join(
        counters, on="_row", how="left"
    )
    return (
        out.sort("_row")
        .drop("_row")
        .select([*(c for c in df.columns if c not in COUNTER_COLUMNS), *COUNTER_COLUMNS])
    )


US_PER_WINDOW: Final = {k: int(v.total_seconds()) * 1_000_000 for k, v in WINDOWS.items()}


def counters_as_of(
    imp_times_us: list[int], click_times_us: list[int], now_us: int
) -> dict[str, float | int | None]:
    """The same five counters for one user from their event history (epoch microseconds).

    The online twin of `add_user_counters`: a profile store keeps each user's recent impression
    and click times and calls this per request, so serving sees exactly what training saw.
    Windows are [now - width, now): strictly earlier events only.
    """
    out: dict[str, float | int | None] = {}
    for label, width in US_PER_WINDOW.items():
        lo = now_us - width
        out[f"user_imps_{label}"] = sum(1 for t in imp_times_us if lo <= t < now_us)
        out[f"user_clicks_{label}"] = sum(1 for t in click_times_us if lo <= t < now_us)
    earlier = [t for t in imp_times_us if t < now_us]
    out["user_secs_since_last_imp"] = (now_us - max(earlier)) / 1e6 if earlier else None
    return {c: out[c] for c in COUNTER_COLUMNS}
