"""Profile counters: the online definition (profile store) equals the as-of batch one (training)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from features.profiles import COUNTER_COLUMNS, add_user_counters, counters_as_of

T0 = datetime(2026, 5, 1, tzinfo=UTC)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _us(t: datetime) -> int:
    return (t - EPOCH) // timedelta(microseconds=1)


events = st.lists(
    st.tuples(
        st.sampled_from(["u1", "u2", "u3"]),
        st.integers(0, 10 * 24 * 3600),  # seconds after T0, many windows' worth
        st.one_of(st.none(), st.integers(0, 2 * 24 * 3600)),  # click delay, None = no click
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(events)
def test_online_counters_equal_batch_counters(rows: list[tuple[str, int, int | None]]) -> None:
    times = [T0 + timedelta(seconds=s) for _, s, _ in rows]
    clicks = [
        None if d is None else t + timedelta(seconds=d)
        for t, (_, _, d) in zip(times, rows, strict=True)
    ]
    df = pl.DataFrame(
        {
            "user_id": [u for u, _, _ in rows],
            "event_time": times,
            "click": [int(c is not None) for c in clicks],
            "click_time": clicks,
        },
        schema_overrides={
            "click": pl.Int8,
            "event_time": pl.Datetime("us", "UTC"),
            "click_time": pl.Datetime("us", "UTC"),
        },
    )
    batch = add_user_counters(df)
    for i, (user, _, _) in enumerate(rows):
        imps = [_us(t) for (u, _, _), t in zip(rows, times, strict=True) if u == user]
        clk = [
            _us(c) for (u, _, _), c in zip(rows, clicks, strict=True) if u == user and c is not None
        ]
        online = counters_as_of(imps, clk, _us(times[i]))
        assert online == {c: batch[c][i] for c in COUNTER_COLUMNS}, (i, rows)
