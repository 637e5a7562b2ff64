"""User counters are as-of: only strictly earlier events count, and clicks by their click time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from features.profiles import COUNTER_COLUMNS, add_user_counters
from features.schema import TIME

T0 = datetime(2024, 3, 4, 12, 0, tzinfo=UTC)
US = timedelta(microseconds=1)
H24, D7 = timedelta(hours=24), timedelta(days=7)


def _log(rows: list[tuple[str | None, timedelta, int, timedelta | None]]) -> pl.DataFrame:
    """rows: (user, event offset from T0, click, click offset from T0 or None)."""
    return pl.DataFrame(
        {
            "user_id": [r[0] for r in rows],
            "event_time": [T0 + r[1] for r in rows],
            "click": [r[2] for r in rows],
            "click_time": [None if r[3] is None else T0 + r[3] for r in rows],
        },
        schema={"user_id": pl.String, "event_time": TIME, "click": pl.Int8, "click_time": TIME},
    )


def _col(df: pl.DataFrame, name: str) -> list:
    return add_user_counters(df)[name].to_list()


def test_first_impression_has_zero_counts_and_no_recency() -> None:
    out = add_user_counters(_log([("u", timedelta(0), 0, None)]))
    assert out.row(0, named=True) == {
        "user_id": "u",
        "event_time": T0,
        "click": 0,
        "click_time": None,
        "user_imps_24h": 0,
        "user_clicks_24h": 0,
        "user_imps_7d": 0,
        "user_clicks_7d": 0,
        "user_secs_since_last_imp": None,
    }


def test_counts_only_strictly_earlier_impressions() -> None:
    df = _log([("u", timedelta(hours=h), 0, None) for h in (0, 1, 2)])
    assert _col(df, "user_imps_24h") == [0, 1, 2]
    assert _col(df, "user_secs_since_last_imp") == [None, 3600.0, 3600.0]


def test_same_timestamp_impressions_do_not_see_each_other() -> None:
    df = _log([("u", timedelta(0), 0, None), ("u", timedelta(0), 0, None)])
    assert _col(df, "user_imps_24h") == [0, 0]
    assert _col(df, "user_secs_since_last_imp") == [None, None]
    later = _log([*((("u", timedelta(0), 0, None),) * 2), ("u", timedelta(seconds=5), 0, None)])
    assert _col(later, "user_imps_24h") == [0, 0, 2]
    assert _col(later, "user_secs_since_last_imp")[2] == 5.0


def test_click_counts_from_its_click_time_not_its_impression_time() -> None:
    df = _log(
        [
            ("u", timedelta(0), 1, timedelta(seconds=30)),
            ("u", timedelta(seconds=10), 0, None),  # before the click happened
            ("u", timedelta(seconds=30), 0, None),  # at the click instant: not strictly before
            ("u", timedelta(seconds=60), 0, None),
        ]
    )
    assert _col(df, "user_clicks_24h") == [0, 0, 0, 1]
    assert _col(df, "user_clicks_7d") == [0, 0, 0, 1]
    assert _col(df, "user_imps_24h") == [0, 1, 2, 3]


def test_own_click_never_leaks_into_own_row() -> None:
    df = _log([("u", timedelta(0), 1, timedelta(seconds=5))])
    assert _col(df, "user_clicks_24h") == [0]


def test_click_without_click_time_is_not_counted() -> None:
    df = _log([("u", timedelta(0), 1, None), ("u", timedelta(hours=1), 0, None)])
    assert _col(df, "user_clicks_24h") == [0, 0]


@pytest.mark.parametrize(("label", "width"), [("24h", H24), ("7d", D7)])
def test_window_includes_its_start_and_excludes_anything_older(
    label: str, width: timedelta
) -> None:
    now = width + timedelta(hours=1)
    df = _log(
        [
            ("u", now - width - US, 1, now - width - US),  # just outside the window
            ("u", now - width, 1, now - width),  # exactly at the window start: inside
            ("u", now, 0, None),
        ]
    )
    assert _col(df, f"user_imps_{label}")[2] == 1
    assert _col(df, f"user_clicks_{label}")[2] == 1


def test_seven_day_window_keeps_what_the_day_window_dropped() -> None:
    df = _log([("u", timedelta(0), 1, timedelta(seconds=1)), ("u", timedelta(days=2), 0, None)])
    out = add_user_counters(df).row(1, named=True)
    assert (out["user_imps_24h"], out["user_imps_7d"]) == (0, 1)
    assert (out["user_clicks_24h"], out["user_clicks_7d"]) == (0, 1)
    assert out["user_secs_since_last_imp"] == 2 * 86400.0


def test_users_do_not_mix_and_null_user_gets_null_counters() -> None:
    df = _log(
        [
            ("a", timedelta(0), 1, timedelta(seconds=1)),
            (None, timedelta(minutes=1), 0, None),
            ("b", timedelta(minutes=2), 0, None),
            ("a", timedelta(minutes=3), 0, None),
            (None, timedelta(minutes=4), 0, None),
        ]
    )
    out = add_user_counters(df)
    assert out["user_imps_24h"].to_list() == [0, None, 0, 1, None]
    assert out["user_clicks_24h"].to_list() == [0, None, 0, 1, None]
    assert out["user_secs_since_last_imp"].to_list() == [None, None, None, 180.0, None]


def test_input_order_is_kept_and_old_counters_are_replaced() -> None:
    df = _log(
        [
            ("u", timedelta(hours=2), 0, None),
            ("u", timedelta(0), 0, None),
            ("u", timedelta(hours=1), 0, None),
        ]
    ).with_columns(user_imps_24h=pl.lit(99, pl.Int32))
    out = add_user_counters(df)
    assert out["event_time"].to_list() == df["event_time"].to_list()
    assert out["user_imps_24h"].to_list() == [2, 0, 1]
    assert out.columns[-len(COUNTER_COLUMNS) :] == list(COUNTER_COLUMNS)
    assert out.columns.count("user_imps_24h") == 1
