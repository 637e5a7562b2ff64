"""Time-ordered windows; pCTR on shown impressions; pCVR attribution and delayed feedback."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from features.schema import conform
from training.splits import LABEL, SplitError, ctr_rows, cvr_rows, make_split, time_split

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def _frame(rows: list[dict]) -> pl.DataFrame:
    base = {"impression_id": "i", "channel": "web", "click": 0, "won": True}
    return conform(pl.DataFrame([{**base, **r} for r in rows]))


def test_windows_are_time_ordered_and_disjoint(small_logs):
    shuffled = small_logs.sample(fraction=1.0, shuffle=True, seed=1)
    split = time_split(shuffled, 0.7, 0.15)
    assert split.train["event_time"].max() < split.valid["event_time"].min()
    assert split.valid["event_time"].max() < split.test["event_time"].min()
    assert split.train.height + split.valid.height + split.test.height == shuffled.height
    assert split.train.height == pytest.approx(0.7 * shuffled.height, abs=2)


def test_equal_times_never_straddle_a_cut():
    rows = [{"event_time": T0 + timedelta(hours=h // 3)} for h in range(30)]
    split = time_split(_frame(rows), 0.5, 0.25)
    assert split.train["event_time"].max() < split.valid["event_time"].min()
    assert split.valid["event_time"].max() < split.test["event_time"].min()


def test_file_order_kept_among_equal_times():
    rows = [{"event_time": T0 + timedelta(seconds=i), "impression_id": str(i)} for i in range(10)]
    split = time_split(_frame(rows), 0.7, 0.1)
    assert split.test["impression_id"].to_list() == ["8", "9"]


def test_too_few_times_is_a_clear_error():
    with pytest.raises(SplitError, match="too few distinct event_time"):
        time_split(_frame([{"event_time": T0}] * 10))
    with pytest.raises(SplitError, match="at least 3"):
        time_split(_frame([{"event_time": T0}]))


def test_ctr_rows_drop_lost_auctions():
    df = _frame(
        [
            {"event_time": T0, "won": True, "click": 1},
            {"event_time": T0, "won": False, "click": 0},
            {"event_time": T0, "won": None, "click": 0},
        ]
    )
    out = ctr_rows(df)
    assert out.height == 2 and out[LABEL].to_list() == [1, 0]


def test_cvr_attribution_window_and_delayed_feedback():
    day = timedelta(days=1)
    rows = [
        # converted 2 days after the click: positive
        {
            "event_time": T0,
            "click": 1,
            "click_time": T0,
            "conversion": 1,
            "conversion_time": T0 + 2 * day,
        },
        # converted 9 days after the click: outside the 7-day window, negative
        {
            "event_time": T0,
            "click": 1,
            "click_time": T0,
            "conversion": 1,
            "conversion_time": T0 + 9 * day,
        },
        # no conversion, window closed: negative
        {"event_time": T0 + day, "click": 1, "click_time": T0 + day, "conversion": 0},
        # clicked 5 days before the cut-off, no conversion yet: window open, excluded
        {"event_time": T0 + 5 * day, "click": 1, "click_time": T0 + 5 * day, "conversion": 0},
        # clicked late but already converted: still excluded (unknown at the same rate)
        {
            "event_time": T0 + 6 * day,
            "click": 1,
            "click_time": T0 + 6 * day,
            "conversion": 1,
            "conversion_time": T0 + 6 * day + timedelta(hours=1),
        },
        # not clicked: not in the post-click set
        {"event_time": T0 + 10 * day, "click": 0},
    ]
    out, info = cvr_rows(_frame(rows), attribution_days=7)
    assert out[LABEL].to_list() == [1, 0, 0]
    assert info == {"clicks": 5, "clicks_matured": 3, "clicks_window_open": 2}


def test_make_split_cvr_without_matured_clicks():
    rows = [{"event_time": T0 + timedelta(hours=i), "click": 1, "click_time": T0} for i in range(5)]
    with pytest.raises(SplitError, match="attribution window"):
        make_split(_frame(rows), "cvr", attribution_days=7)


def test_make_split_counts(small_logs):
    split, info = make_split(small_logs, "ctr")
    assert info["rows_train"] == split.train.height
    assert info["positives_test"] == int(split.test[LABEL].sum())
    assert info["rows_shown"] == small_logs.filter(pl.col("won")).height
