"""Hostile input, in process: every class that once got a 500 now gets a 4xx naming the field,
a batch of events is refused whole or applied whole, and writes need the key.

The app is the one the service runs (create_app), driven through httpx's ASGI transport with
the tiny models loaded, so each case runs in milliseconds; tests/serving/test_api.py and the
schemathesis run cover the same service over real HTTP.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from serving.app import create_app
from serving.models.predictor import Predictor
from serving.settings import BidoptSettings
from tests.serving.campaign_files import CAMPAIGNS

KEY = "hostile-test-key-0123456789"
IMP = {"event_time": "2025-06-01T14:05:00Z", "channel": "web"}
BID_IMP = {**IMP, "impression_id": "i1", "floor_price": 0.0, "auction_type": "second"}
RTB = {"id": "r1", "imp": [{"id": "1", "bidfloor": 0.01, "banner": {"w": 320, "h": 50}}]}
BIG = str(1 << 70)


@pytest.fixture
def app(tmp_path: Path, predictor: Predictor) -> FastAPI:
    campaigns = tmp_path / "campaigns.toml"
    campaigns.write_text(CAMPAIGNS)
    app = create_app(
        BidoptSettings(
            tracking_uri=f"sqlite:///{tmp_path / 'absent.db'}",
            ledger_dir=tmp_path / "ledger",
            campaigns_file=campaigns,
            api_key=KEY,
        )
    )
    app.state.holder.current = predictor
    return app


def post(app: FastAPI, path: str, body: str | bytes, key: str | None = KEY) -> httpx.Response:
    headers = {"content-type": "application/json"}
    if key is not None:
        headers["x-api-key"] = key

    async def run() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c,
        ):
            return await c.post(path, content=body, headers=headers)

    return asyncio.run(run())


def spend(app: FastAPI, campaign: str) -> float:
    keeper = app.state.service.keeper
    keeper.refresh()
    return keeper.spent.get(campaign, (0.0, 0.0))[0]


def win(event_id: str, price: float, **kw: Any) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "type": "win",
        "impression_id": f"imp-{event_id}",
        "campaign_id": "web-cpm",
        "price": price,
        **kw,
    }


def now_iso(delta_s: float = 0.0) -> str:
    return (datetime.now(UTC) + timedelta(seconds=delta_s)).isoformat()


# -- the four classes that were 500s ------------------------------------------------------------

HOSTILE = [
    # (name, path, raw body, expected status, location that must be named)
    ("int beyond 64 bits", "/v1/predict",
     f'{{"impressions": [{{**IMP**, "slot_width": {BIG}}}]}}', 422,
     ["body", "impressions", 0, "slot_width"]),
    ("int beyond 64 bits", "/v1/events",
     f'{{"events": [{{"event_id": "e", "type": "win", "impression_id": "i", '
     f'"campaign_id": "web-cpm", "price": {BIG}}}]}}', 422, ["body", "events", 0, "price"]),
    ("int beyond 64 bits", "/openrtb2/bid",
     f'{{"id": "r", "at": {BIG}, "imp": [{{"id": "1", "banner": {{}}}}]}}', 400, "at"),
    ("year 1 east of UTC", "/v1/predict",
     '{"impressions": [{**IMP**, "event_time": "0001-01-01T00:00:00+05:00"}]}', 422,
     ["body", "impressions", 0, "event_time"]),
    ("year 9999 west of UTC", "/v1/bid",
     '{"impressions": [{**BID**, "event_time": "9999-12-31T23:59:59-05:00"}], '
     '"campaigns": [{"campaign_id": "c", "goal": "cpm", "target": 1, "max_bid": 2, '
     '"creative_ids": ["a"]}]}', 422, ["body", "impressions", 0, "event_time"]),
    ("year 1 east of UTC", "/v1/events",
     '{"events": [{"event_id": "e", "type": "click", "impression_id": "i", '
     '"campaign_id": "web-cpm", "time": "0001-01-01T00:00:00+01:00"}]}', 422,
     ["body", "events", 0, "time"]),
    ("lone surrogate", "/v1/bid",
     '{"impressions": [{**BID**, "impression_id": "\\ud800"}], "campaign_ids": ["web-cpm"]}',
     422, ["body", "impressions", 0, "impression_id"]),
    ("lone surrogate", "/v1/events",
     '{"events": [{"event_id": "x\\udfffy", "type": "click", "impression_id": "i", '
     '"campaign_id": "web-cpm"}]}', 422, ["body", "events", 0, "event_id"]),
    ("lone surrogate", "/openrtb2/bid",
     '{"id": "\\ud83d", "imp": [{"id": "1", "banner": {}}]}', 400, "id"),
    ("nested past the recursion limit", "/v1/predict",
     '{"impressions": ' + "[" * 100_000 + "]" * 100_000 + "}", 422, ["body"]),
    ("nested past the recursion limit", "/v1/events",
     '{"events": ' + "[" * 100_000 + "]" * 100_000 + "}", 422, ["body"]),
    ("nested past the recursion limit", "/openrtb2/bid",
     '{"id": ' + "[" * 100_000 + "]" * 100_000 + "}", 400, "body"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "path", "raw", "status", "where"), HOSTILE)
def test_hostile_bodies_get_a_4xx_naming_the_field(
    app: FastAPI, name: str, path: str, raw: str, status: int, where: Any
) -> None:
    raw = raw.replace("{**IMP**", json.dumps(IMP)[:-1]).replace(
        "{**BID**", json.dumps(BID_IMP)[:-1]
    )
    r = post(app, path, raw)
    assert r.status_code == status, (name, r.text)
    body = r.json()
    if status == 400:  # OpenRTB: {"detail", "field"}
        assert body["field"] == where and body["detail"], body
    else:
        assert body["detail"][0]["loc"] == where, body
        assert body["detail"][0]["msg"]


def test_openrtb_takes_the_same_impression_limit(app: FastAPI) -> None:
    imps = [{"id": str(i), "bidfloor": 0.01, "banner": {}} for i in range(1001)]
    r = post(app, "/openrtb2/bid", json.dumps({**RTB, "imp": imps}))
    assert r.status_code == 413
    assert r.json() == {"detail": "1001 imp in one request; the limit is 1000", "field": "imp"}


def test_openrtb_exchange_parameter_is_bounded(app: FastAPI) -> None:
    r = post(app, "/openrtb2/bid?exchange=" + "x" * 300, json.dumps(RTB))
    assert r.status_code == 400 and r.json()["field"] == "exchange"


# -- events: whole batches, times, prices, keys ---------------------------------------------------


def test_a_bad_event_late_in_a_batch_changes_nothing(app: FastAPI) -> None:
    before = spend(app, "web-cpm")
    batch = [win(f"b{k}", 1.0) for k in range(5)] + [win("b5", 1.0, time="not a time")]
    r = post(app, "/v1/events", json.dumps({"events": batch}))
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "events", 5, "time"]
    batch[5] = win("b5", 1.0, time=now_iso(3600))  # well-formed but an hour in the future
    r = post(app, "/v1/events", json.dumps({"events": batch}))
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "events", 5, "time"]
    assert spend(app, "web-cpm") == before  # nothing applied, nothing claimed
    batch[5] = win("b5", 1.0)
    r = post(app, "/v1/events", json.dumps({"events": batch}))
    assert r.json() == {"accepted": 6, "duplicates": 0}  # the retry counts every one once
    assert spend(app, "web-cpm") == pytest.approx(before + 6 * 1.0 / 1000)


def test_a_win_above_the_max_bid_is_refused_naming_price(app: FastAPI) -> None:
    r = post(app, "/v1/events", json.dumps({"events": [win("p1", 1e6)]}))
    assert r.status_code == 422
    [d] = r.json()["detail"]
    assert d["loc"] == ["body", "events", 0, "price"] and "max bid 10" in d["msg"]
    assert spend(app, "web-cpm") == 0.0


@pytest.mark.parametrize(
    "when",
    [lambda: now_iso(-9 * 86400), lambda: "2020-01-01T00:00:00Z", lambda: now_iso(400)],
    ids=["older than the dedupe window", "another year", "future beyond the skew"],
)
def test_event_times_outside_the_window_are_refused(app: FastAPI, when: Any) -> None:
    body = {"events": [win("t1", 1.0, time=when())]}  # the time taken when the test runs
    r = post(app, "/v1/events", json.dumps(body))
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == ["body", "events", 0, "time"]
    assert spend(app, "web-cpm") == 0.0


def test_an_event_books_the_day_it_happened_on(app: FastAPI) -> None:
    yesterday = datetime.now(UTC) - timedelta(days=1)
    r = post(
        app, "/v1/events", json.dumps({"events": [win("y1", 4.0, time=yesterday.isoformat())]})
    )
    assert r.json() == {"accepted": 1, "duplicates": 0}
    store = app.state.service.keeper.store
    assert store.spend("web-cpm", yesterday.date().isoformat()) == pytest.approx(0.004)
    assert spend(app, "web-cpm") == 0.0  # today's budget is untouched


def test_events_need_the_key_when_one_is_configured(app: FastAPI) -> None:
    for key in (None, "wrong-key-0123456789abc"):
        r = post(app, "/v1/events", json.dumps({"events": [win("k1", 1.0)]}), key=key)
        assert r.status_code == 401
        assert r.json() == {"detail": "missing or invalid API key", "field": "X-API-Key"}
    assert spend(app, "web-cpm") == 0.0
    assert post(app, "/v1/events", json.dumps({"events": [win("k1", 1.0)]})).status_code == 200


def test_without_a_key_only_loopback_is_allowed(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'absent.db'}"
    for host in ("127.0.0.1", "127.0.0.2", "::1", "localhost"):
        assert BidoptSettings(tracking_uri=uri, host=host).api_key is None
    for host in ("0.0.0.0", "192.0.2.10", "::", "example.com"):
        with pytest.raises(ValueError, match="not a loopback address and no BIDOPT_API_KEY"):
            BidoptSettings(tracking_uri=uri, host=host)
    assert BidoptSettings(tracking_uri=uri, host="0.0.0.0", api_key=KEY).host == "0.0.0.0"


def test_the_service_says_at_start_that_event_ingestion_is_open(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(
        BidoptSettings(
            tracking_uri=f"sqlite:///{tmp_path / 'absent.db'}", ledger_dir=tmp_path / "ledger"
        )
    )

    async def start_and_stop() -> None:
        async with app.router.lifespan_context(app):
            pass

    with caplog.at_level("WARNING", logger="bidopt.serving"):
        asyncio.run(start_and_stop())
    assert "event ingestion (/v1/events) is open" in caplog.text
