from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bidding import targeting as t
from bidding.campaigns import Campaign
from bidding.rules import parse_ip
from bidding.targeting import local_time

BASE: dict[str, Any] = dict(
    id="c1", goal="cpc", target=1.0, max_bid=10.0, daily_budget=100.0, creatives=("a",)
)
REQUEST: dict[str, Any] = {
    "channel": "web",
    "country": "FR",
    "region": "IDF",
    "device_type": "mobile",
    "os": "Android",
    "publisher": "News.example",
}


def _campaign(**extra: Any) -> Campaign:
    return Campaign(**{**BASE, **extra})


def _check(
    c: Campaign,
    request: dict[str, Any] | None = None,
    *,
    hour: int | None = 12,
    weekday: int | None = 2,
    segments: tuple[str, ...] = (),
    ip: str | None = "198.51.100.0",
    today: date | None = date(2025, 6, 15),
    imps: tuple[int, int] | None = None,
) -> str | None:
    """`hour`, `weekday` and `today` are in the campaign's timezone (`local_time`), `imps` the
    user's (24 h, 7 d) impressions of the campaign; what bidding.selection hands the check."""
    return c.compiled_targeting.check(
        {**REQUEST, **(request or {})},
        hour,
        weekday,
        frozenset(segments),
        parse_ip(ip),
        today,
        imps,
    )


def test_untargeted_campaign_is_eligible_everywhere() -> None:
    c = _campaign()
    assert _check(c) is None
    assert _check(c, {k: None for k in REQUEST}, hour=None, weekday=None, ip=None) is None


@pytest.mark.parametrize(
    ("targeting", "good", "bad", "reason"),
    [
        (
            {"channels": ["web", "app"]},
            {"channel": "app"},
            {"channel": "ctv"},
            t.CHANNEL_NOT_TARGETED,
        ),
        ({"channels": "web"}, {}, {"channel": None}, t.CHANNEL_NOT_TARGETED),
        ({"countries": ["fr", "DE"]}, {"country": "de"}, {"country": "US"}, t.COUNTRY_NOT_TARGETED),
        ({"countries": ["FR"]}, {}, {"country": None}, t.COUNTRY_NOT_TARGETED),
        ({"regions": ["idf"]}, {}, {"region": "PAC"}, t.REGION_NOT_TARGETED),
        ({"device_types": ["mobile"]}, {}, {"device_type": "desktop"}, t.DEVICE_NOT_TARGETED),
        ({"os": ["android", "iOS"]}, {"os": "ios"}, {"os": "windows"}, t.OS_NOT_TARGETED),
        ({"publisher_block": ["news.example"]}, {"publisher": "b.com"}, {}, t.PUBLISHER_BLOCKED),
        ({"publisher_allow": ["b.com"]}, {"publisher": "B.com"}, {}, t.PUBLISHER_NOT_ALLOWED),
        (
            {"publisher_allow": ["b.com"]},
            {"publisher": "b.com"},
            {"publisher": None},
            t.PUBLISHER_NOT_ALLOWED,
        ),
    ],
)
def test_request_dimensions(
    targeting: dict[str, Any], good: dict[str, Any], bad: dict[str, Any], reason: str
) -> None:
    c = _campaign(targeting=targeting)
    assert _check(c, good) is None
    assert _check(c, bad) == reason


def test_unknown_publisher_passes_a_block_list() -> None:
    c = _campaign(targeting={"publisher_block": ["news.example"]})
    assert _check(c, {"publisher": None}) is None


def test_block_list_wins_over_allow_list() -> None:
    c = _campaign(targeting={"publisher_allow": ["a.com"], "publisher_block": ["a.com"]})
    assert _check(c, {"publisher": "a.com"}) == t.PUBLISHER_BLOCKED


def test_hours_and_weekdays() -> None:
    c = _campaign(targeting={"hours": ["7..9", 12, "18..23"], "weekdays": "0..4"})
    assert c.targeting.hours == frozenset({7, 8, 9, 12, 18, 19, 20, 21, 22, 23})
    for hour in (7, 9, 12, 18, 23):
        assert _check(c, hour=hour) is None
    for hour in (0, 6, 10, 11, 13, 17):
        assert _check(c, hour=hour) == t.HOUR_NOT_TARGETED
    assert _check(c, hour=None) == t.HOUR_NOT_TARGETED
    assert _check(c, weekday=4) is None
    assert _check(c, weekday=5) == t.WEEKDAY_NOT_TARGETED


def test_segments_include_any_and_exclude() -> None:
    c = _campaign(targeting={"segments_include": ["a", "b"], "segments_exclude": "churned"})
    assert _check(c, segments=("x", "b")) is None
    assert _check(c, segments=("x",)) == t.SEGMENT_NOT_TARGETED
    assert _check(c, segments=()) == t.SEGMENT_NOT_TARGETED
    assert _check(c, segments=("a", "churned")) == t.SEGMENT_EXCLUDED


def test_ip_block() -> None:
    c = _campaign(targeting={"ip_block": ["203.0.113.0/24", "10.0.0.0/8", "2001:db8:1::/48"]})
    assert _check(c, ip="203.0.113.0") == t.IP_BLOCKED
    assert _check(c, ip="10.20.30.0") == t.IP_BLOCKED
    assert _check(c, ip="2001:db8:1::") == t.IP_BLOCKED
    assert _check(c, ip="2001:db8:2::") is None
    assert _check(c, ip="203.0.114.0") is None
    assert _check(c, ip=None) is None  # unknown IP: nothing to block


@pytest.mark.parametrize(
    ("period", "imps", "reason"),
    [
        ("24h", None, None),  # unknown user: no history
        ("24h", (2, 9), None),
        ("24h", (3, 3), t.FREQUENCY_CAP_REACHED),
        ("7d", (0, 2), None),
        ("7d", (0, 3), t.FREQUENCY_CAP_REACHED),
    ],
)
def test_frequency_cap(period: str, imps: tuple[int, int] | None, reason: str | None) -> None:
    c = _campaign(frequency_cap={"impressions": 3, "period": period})
    assert _check(c, imps=imps) == reason


def test_flight_dates_are_inclusive_and_open_ended() -> None:
    c = _campaign(flight={"start": date(2025, 3, 1), "end": "2025-03-31"})
    assert _check(c, today=date(2025, 3, 1)) is None
    assert _check(c, today=date(2025, 3, 31)) is None
    assert _check(c, today=date(2025, 2, 28)) == t.OUTSIDE_FLIGHT
    assert _check(c, today=date(2025, 4, 1)) == t.OUTSIDE_FLIGHT
    assert _check(c, today=None) == t.OUTSIDE_FLIGHT
    open_end = _campaign(flight={"start": date(2025, 3, 1)})
    assert _check(open_end, today=date(2099, 1, 1)) is None


def test_timezone_hour_conversion() -> None:
    # 23:30 UTC on Monday 2025-06-02 is 19:30 the same day in New York (EDT, UTC-4) ...
    when = datetime(2025, 6, 2, 23, 30, tzinfo=UTC)
    assert local_time(ZoneInfo("America/New_York"), when) == (19, 0, date(2025, 6, 2))
    # ... and 01:30 on Tuesday in Paris (CEST, UTC+2); in winter New York is UTC-5.
    assert local_time(ZoneInfo("Europe/Paris"), when) == (1, 1, date(2025, 6, 3))
    winter = datetime(2025, 1, 6, 23, 30, tzinfo=UTC)
    assert local_time(ZoneInfo("America/New_York"), winter)[0] == 18
    assert local_time(ZoneInfo("UTC"), datetime(2025, 6, 2, 23, 30)) == (23, 0, date(2025, 6, 2))
    ny = _campaign(timezone="America/New_York", targeting={"hours": "18..23"})
    hour, weekday, today = local_time(ny.tz, when)
    assert _check(ny, hour=hour, weekday=weekday, today=today) is None
    utc_hour = local_time(ZoneInfo("UTC"), when)[0]
    assert _check(_campaign(targeting={"hours": "18..22"}), hour=utc_hour) == t.HOUR_NOT_TARGETED


def test_flight_day_is_the_campaigns_day() -> None:
    c = _campaign(timezone="Asia/Tokyo", flight={"start": date(2025, 6, 3)})
    when = datetime(2025, 6, 2, 16, 0, tzinfo=UTC)  # already 2025-06-03 01:00 in Tokyo
    hour, weekday, today = local_time(c.tz, when)
    assert _check(c, hour=hour, weekday=weekday, today=today) is None
    assert local_time(ZoneInfo("UTC"), when)[2] < date(2025, 6, 3)
