"""POST /openrtb2/bid and the win notice in the live service, on the shared OpenRTB fixtures."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.helpers.serving import Server, run_server
from tests.redis_server import redis_server
from tests.serving.campaign_files import CAMPAIGNS

pytestmark = pytest.mark.integration

FIXTURES = Path(
    os.environ.get(
        "BIDOPT_SHARED_OPENRTB", Path(__file__).resolve().parents[2] / ".." / "shared" / "openrtb"
    )
)
NOBID = "X-Bidopt-Nobid-Reason"


def fixture(name: str) -> dict[str, Any]:
    path = FIXTURES / name
    if not path.exists():
        pytest.skip(f"OpenRTB fixtures not found at {FIXTURES} (set BIDOPT_SHARED_OPENRTB)")
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def server(
    serving_store: tuple[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    work = tmp_path_factory.mktemp("openrtb-server")
    (work / "campaigns.toml").write_text(CAMPAIGNS)
    env = {"BIDOPT_STATE_REFRESH_S": "0.2"}
    args = ("--campaigns", str(work / "campaigns.toml"))
    with run_server(serving_store[0], work, env=env, args=args) as s:
        yield s


def only_bid(r: Any, request: dict[str, Any]) -> dict[str, Any]:
    assert r.status_code == 200, (r.status_code, r.headers.get(NOBID), r.text)
    body = r.json()
    assert body["id"] == request["id"] and body["cur"] == "USD"
    [seat] = body["seatbid"]
    [bid] = seat["bid"]
    assert bid["impid"] in {imp["id"] for imp in request["imp"]}
    assert "${AUCTION_PRICE}" in bid["nurl"]
    return bid


def test_banner_site(server: Server) -> None:
    req = fixture("banner-site.json")
    bid = only_bid(server.client.post("/openrtb2/bid", json=req), req)
    assert bid["impid"] == "1" and bid["price"] >= 0.03
    assert (bid["cid"], bid["crid"], bid["adomain"]) == ("web-cpm", "web-cr", ["shop.example"])
    assert (bid["w"], bid["h"]) == (320, 50)  # the 300x250 creative's domain is in badv
    assert not set(bid["adomain"]) & set(req["badv"])


def test_bcat_blocks_a_creative_by_its_parent_category(server: Server) -> None:
    """Only the 300x250 slot is offered and badv is lifted: the one creative that fits is then
    "blocked-cr", whose category IAB25-2 sits under the request's bcat IAB25."""
    req = fixture("banner-site.json")
    req["imp"][0]["banner"]["format"] = [{"w": 300, "h": 250}]
    req["badv"] = []
    r = server.client.post("/openrtb2/bid", json=req)
    assert r.status_code == 204, r.text
    assert r.headers[NOBID] == "no_fitting_creative"
    req["bcat"] = ["IAB26"]
    bid = only_bid(server.client.post("/openrtb2/bid", json=req), req)
    assert (bid["crid"], bid["cat"]) == ("blocked-cr", ["IAB25-2"])


def test_video_site_second_price_with_segments(server: Server) -> None:
    req = fixture("video-site-second-price.json")
    bid = only_bid(server.client.post("/openrtb2/bid", json=req), req)
    assert (bid["cid"], bid["crid"]) == ("video-cpm", "spot-15")  # the 60 s spot is too long
    assert bid["price"] >= 2.5


def test_native_app(server: Server) -> None:
    req = fixture("native-app.json")
    bid = only_bid(server.client.post("/openrtb2/bid", json=req), req)
    assert (bid["cid"], bid["crid"]) == ("native-cpc", "native-cr")
    assert "192.0.2.77" not in server.log()


def test_ctv_eur_short_tmax_is_an_immediate_no_bid(server: Server) -> None:
    req = fixture("ctv-app-video-short-tmax.json")
    r = server.client.post("/openrtb2/bid", json=req)
    assert r.status_code == 204 and r.content == b""
    assert r.headers[NOBID] in {"insufficient_time", "currency_not_supported"}


def test_other_currency_is_a_no_bid_with_reason(server: Server) -> None:
    req = {**fixture("banner-site.json"), "cur": ["EUR"]}
    r = server.client.post("/openrtb2/bid", json=req)
    assert (r.status_code, r.headers[NOBID]) == (204, "currency_not_supported")
    req = fixture("banner-site.json")
    req["imp"][0]["bidfloorcur"] = "EUR"
    r = server.client.post("/openrtb2/bid", json=req)
    assert (r.status_code, r.headers[NOBID]) == (204, "currency_not_supported")


def test_tight_tmax_is_an_immediate_no_bid(server: Server) -> None:
    req = {**fixture("banner-site.json"), "tmax": 9}
    r = server.client.post("/openrtb2/bid", json=req)
    assert (r.status_code, r.headers[NOBID]) == (204, "insufficient_time")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b'{"id": "x", "imp": [', "body"),
        (b'{"imp": [{"id": "1", "banner": {}}]}', "id"),
        (b'{"id": "x", "imp": []}', "imp"),
        (b'{"id": "x", "imp": [{"id": "1", "banner": {}, "bidfloor": -1}]}', "imp[0].bidfloor"),
        (b'{"id": "x", "at": 3, "imp": [{"id": "1", "banner": {}}]}', "at"),
        (b'{"id": "x", "imp": [{"id": "1", "banner": {"w": "wide"}}]}', "imp[0].banner.w"),
        (b"[1, 2]", "body"),
    ],
)
def test_malformed_bid_request_is_400_naming_the_field(
    server: Server, body: bytes, field: str
) -> None:
    r = server.client.post(
        "/openrtb2/bid", content=body, headers={"content-type": "application/json"}
    )
    assert r.status_code == 400, r.text
    assert r.json()["field"] == field and r.json()["detail"]


def test_win_notice_records_spend_once(server: Server) -> None:
    req = {**fixture("banner-site.json"), "id": "win-notice-test"}
    bid = only_bid(server.client.post("/openrtb2/bid", json=req), req)
    clearing = round(bid["price"] / 2, 6)  # second price: below our bid
    url = urlsplit(bid["nurl"].replace("${AUCTION_PRICE}", str(clearing)))
    before = spend(server, "web-cpm")
    r = server.client.get(f"{url.path}?{url.query}")
    assert r.status_code == 200 and r.json() == {"accepted": 1, "duplicates": 0}
    assert server.client.get(f"{url.path}?{url.query}").json() == {"accepted": 0, "duplicates": 1}
    assert spend(server, "web-cpm") == pytest.approx(before + clearing / 1000)
    forged = url.query.replace("cid=web-cpm", "cid=small-budget")
    assert server.client.get(f"{url.path}?{forged}").status_code == 403
    bid_price = float(parse_qs(url.query)["bp"][0])
    assert bid_price == bid["price"]  # the signed bid price is the one we sent
    dearer = url.query.replace(f"&price={clearing}", f"&price={bid_price + 0.01}")
    r = server.client.get(f"{url.path}?{dearer}")  # the same notice with a forged price
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "price"], r.text
    raised = url.query.replace(f"bp={parse_qs(url.query)['bp'][0]}", "bp=999.0")
    assert server.client.get(f"{url.path}?{raised}").status_code == 403  # bp is signed
    assert spend(server, "web-cpm") == pytest.approx(before + clearing / 1000)


def spend(server: Server, campaign: str) -> float:
    status = server.client.get("/v1/campaigns").json()
    return next(c["spend_today"] for c in status["campaigns"] if c["id"] == campaign)


def test_redis_state_and_fallback_visible_in_metrics(
    serving_store: tuple[str, Path], tmp_path: Path
) -> None:
    (tmp_path / "campaigns.toml").write_text(CAMPAIGNS)
    args = ("--campaigns", str(tmp_path / "campaigns.toml"))
    event = {
        "event_id": "r1",
        "type": "win",
        "impression_id": "i",
        "campaign_id": "web-cpm",
        "price": 4.0,
    }
    with redis_server(tmp_path) as url:
        env = {"BIDOPT_STATE_REFRESH_S": "0.2", "BIDOPT_REDIS_URL": url}
        with run_server(serving_store[0], tmp_path, env=env, args=args) as s:
            assert s.client.get("/v1/campaigns").json()["backend"] == "redis"
            assert s.client.post("/v1/events", json={"events": [event]}).json()["accepted"] == 1
            assert "bidopt_state_degraded 0.0" in s.client.get("/metrics").text
            import redis

            redis.Redis.from_url(url).shutdown(nosave=True)
            deadline = time.monotonic() + 10
            while "bidopt_state_degraded 1.0" not in s.client.get("/metrics").text:
                assert time.monotonic() < deadline, "degraded state never reported"
                time.sleep(0.2)
            status = s.client.get("/v1/campaigns").json()
            assert status["backend"] == "memory (redis unreachable)" and status["degraded"]
            r = s.client.post("/openrtb2/bid", json=fixture("banner-site.json"))
            assert r.status_code == 200, r.headers  # still bidding, on local state
            [bid] = r.json()["seatbid"][0]["bid"]
            assert bid["cid"] == "web-cpm" and bid["price"] > 0
            assert s.client.post("/v1/events", json={"events": [event]}).status_code == 200
            assert "redis unreachable" in s.log()
