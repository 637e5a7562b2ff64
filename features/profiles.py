"""User frequency/recency counters, defined once for logs (as-of) and for serving.

In logs they are computed strictly from events earlier than each impression, so a model never
sees its own future: an impression's own click cannot leak into its `user_clicks_24h`. A click
counts from its click time, not from the time of the impression it belongs to. At serving time the
same numbers arrive as request fields (from the caller or the profile store).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Final

import numpy as np
import polars as pl

WINDOWS: Final = {"24h": timedelta(hours=24), "7d": timedelta(days=7)}
COUNTER_COLUMNS: Final = (
    "user_imps_24h",
    "user_clicks_24h",
    "user_imps_7d",
    "user_clicks_7d",
    "user_secs_since_last_imp",
)
US_PER_WINDOW: Final = {k: int(v.total_seconds()) * 1_000_000 for k, v in WINDOWS.items()}


class _SortedEvents:
    """One kind of event (impressions or clicks) sorted by (user, time) for as-of look-ups.

    Times are ranked densely together with every query time, so (user, rank) packs into one
    int64 key and a single `np.searchsorted` answers "how many of this user's events happened
    strictly before t" for all rows at once: O(n log n) in numpy, no join, no Python loop.
    """

    def __init__(self, users: np.ndarray, times: np.ndarray, query_times: list[np.ndarray]) -> None:
        all_times = np.sort(np.concatenate([times, *query_times]))
        keep = np.empty(all_times.size, dtype=bool)
        keep[:1] = True
        np.not_equal(all_times[1:], all_times[:-1], out=keep[1:])
        self._uniq = all_times[keep]  # sort-based unique: numpy's hash unique is slower here
        self._r = np.int64(self._uniq.size + 1)
        keys = users.astype(np.int64) * self._r + np.searchsorted(self._uniq, times)
        order = np.argsort(keys, kind="stable")
        self.keys = keys[order]
        self.times = times[order]

    def _position(self, users: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(index of the user's first event, index just past their events before t).

        Needles are sorted before `searchsorted` and scattered back: sorted look-ups walk
        the key array in order instead of jumping around it, several times faster.
        """
        u = users.astype(np.int64) * self._r
        both = np.concatenate([u, u + np.searchsorted(self._uniq, t)])
        order = np.argsort(both, kind="stable")
        found = np.empty(both.size, dtype=np.int64)
        found[order] = np.searchsorted(self.keys, both[order], side="left")
        return found[: u.size], found[u.size :]

    def count_before(self, users: np.ndarray, t: np.ndarray) -> np.ndarray:
        first, end = self._position(users, t)
        return end - first

    def last_before(self, users: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Time of the user's latest event strictly before t, or -1 where there is none."""
        first, end = self._position(users, t)
        idx = end - 1
        return np.where(idx >= first, self.times[np.maximum(idx, 0)], -1)


def add_user_counters(df: pl.DataFrame) -> pl.DataFrame:
    """Return `df` with the five counter columns computed as of each row's event_time.

    Rows without a user_id get nulls: an anonymous impression has no history. Only won rows
    are impressions (a lost auction showed the user someone else's ad); every row, won or
    lost, gets the counters as of its time. Without a `won` column every row is an impression,
    as in logs of served impressions (iPinYou). The profile store counts win notices: the same.
    """
    known = df.select(
        _user=pl.col("user_id").cast(pl.String).cast(pl.Categorical).to_physical().cast(pl.Int64),
        _t=pl.col("event_time").dt.epoch("us"),
        _c=pl.when(pl.col("click") == 1).then(pl.col("click_time").dt.epoch("us")),
        _w=pl.col("won").fill_null(True) if "won" in df.columns else pl.lit(True),
    )
    has_user = known["_user"].is_not_null().to_numpy() & known["_t"].is_not_null().to_numpy()
    users = known["_user"].to_numpy()[has_user]
    t = known["_t"].to_numpy()[has_user]
    c = known["_c"].to_numpy()[has_user]
    clicked = ~np.isnan(c) if c.dtype.kind == "f" else np.ones(c.size, dtype=bool)
    won = known["_w"].to_numpy()[has_user].astype(bool)
    widths = [np.int64(US_PER_WINDOW[k]) for k in WINDOWS]
    queries = [t, *(t - w for w in widths)]
    imps = _SortedEvents(users[won], t[won], queries)
    clicks = _SortedEvents(users[clicked], c[clicked].astype(np.int64), queries)
    cols: dict[str, np.ndarray] = {}
    imps_now, clicks_now = imps.count_before(users, t), clicks.count_before(users, t)
    for label, width in zip(WINDOWS, widths, strict=True):
        cols[f"user_imps_{label}"] = imps_now - imps.count_before(users, t - width)
        cols[f"user_clicks_{label}"] = clicks_now - clicks.count_before(users, t - width)
    last = imps.last_before(users, t)
    secs = np.where(last >= 0, (t - last).astype(np.float64) / 1e6, np.nan)
    n = df.height
    out = {}
    for name in COUNTER_COLUMNS[:4]:
        full = np.zeros(n, dtype=np.int32)
        full[has_user] = cols[name]
        out[name] = pl.Series(name, full).set(pl.Series(~has_user), None)
    full_secs = np.full(n, np.nan)
    full_secs[has_user] = secs
    out["user_secs_since_last_imp"] = pl.Series("user_secs_since_last_imp", full_secs).fill_nan(
        None
    )
    rest = [c for c in df.columns if c not in COUNTER_COLUMNS]
    return df.select(rest).with_columns(**out)


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
