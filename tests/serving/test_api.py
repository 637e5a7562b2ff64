"""Every endpoint of the live service (real uvicorn subprocess, real MLflow store)."""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, Request

from serving.api.schemas import PredictRequest
from serving.lane import JsonBodyRoute, direct_handlers
from tests.helpers.serving import API_KEY, Server

pytestmark = pytest.mark.integration

IMP = {"event_time": "2025-06-01T14:05:00Z", "channel": "web", "publisher": "news.example.com"}
BID_IMP = {**IMP, "impression_id": "i1", "floor_price": 0.0, "auction_type": "first"}
CAMPAIGN = {
    "campaign_id": "c1",
    "goal": "cpm",
    "target": 2.5,
    "max_bid": 10.0,
    "creative_ids": ["a"],
}


JSON = {"content-type": "application/json"}


def post_raw(server: Server, path: str, body: str | bytes, **kw: Any) -> httpx.Response:
    headers = {"content-type": "application/json", **kw.pop("headers", {})}
    return server.client.post(path, content=body, headers=headers, **kw)


def test_health_ready_and_models(live: Server) -> None:
    assert live.client.get("/healthz").json() == {"status": "ok"}
    assert live.client.get("/readyz").json() == {"ready": True, "reason": None}
    status = live.client.get("/v1/models").json()
    assert status["ready"] is True and status["last_reload_error"] is None
    for key, name in (("ctr", "bidopt-ctr"), ("cvr", "bidopt-cvr")):
        info = status["models"][key]
        assert info["name"] == name and info["alias"] == "champion"
        assert info["version"].isdigit() and info["run_id"] and info["loaded_at"]


def test_predict_one_and_many(live: Server) -> None:
    r = live.client.post("/v1/predict", json={"impressions": [IMP]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["predictions"]) == 1
    p = body["predictions"][0]
    assert 0.0 <= p["pctr"] <= 1.0 and 0.0 <= p["pcvr"] <= 1.0
    assert body["models"]["ctr"]["name"] == "bidopt-ctr"
    many = [{**IMP, "publisher": f"site-{i}.example", "user_segments": ["s1"]} for i in range(50)]
    r = live.client.post("/v1/predict", json={"impressions": many})
    assert r.status_code == 200 and len(r.json()["predictions"]) == 50


def test_unknown_categories_are_not_errors(live: Server) -> None:
    odd = {**IMP, "publisher": "never-seen.example", "os": "TempleOS", "country": "ZZ"}
    r = live.client.post("/v1/predict", json={"impressions": [odd]})
    assert r.status_code == 200, r.text


def test_bid(live: Server) -> None:
    r = live.client.post("/v1/bid", json={"impressions": [BID_IMP], "campaigns": [CAMPAIGN]})
    assert r.status_code == 200, r.text
    [b] = r.json()["bids"]
    assert b == {**b, "impression_id": "i1", "bid": True, "price": 2.5, "campaign_id": "c1"}
    assert b["creative_id"] == "a" and b["reason"] is None
    high_floor = {**BID_IMP, "floor_price": 3.0}
    r = live.client.post("/v1/bid", json={"impressions": [high_floor], "campaigns": [CAMPAIGN]})
    [b] = r.json()["bids"]
    assert (b["bid"], b["price"], b["reason"]) == (False, None, "below_floor")


def body_of(imp: dict[str, Any]) -> dict[str, Any]:
    return {"impressions": [imp], "campaigns": [CAMPAIGN]}


@pytest.mark.parametrize(
    ("path", "body", "loc"),
    [
        ("/v1/predict", '{"impressions": [', ["body", 17]),
        (
            "/v1/predict",
            {"impressions": [{**IMP, "channel": 5}]},
            ["body", "impressions", 0, "channel"],
        ),
        (
            "/v1/predict",
            {"impressions": [{"channel": "web"}]},
            ["body", "impressions", 0, "event_time"],
        ),
        (
            "/v1/predict",
            {"impressions": [{**IMP, "floorprice": 1}]},
            ["body", "impressions", 0, "floorprice"],
        ),
        ("/v1/predict", {"impressions": []}, ["body", "impressions"]),
        (
            "/v1/predict",
            {"impressions": [{**IMP, "slot_width": "wide"}]},
            ["body", "impressions", 0, "slot_width"],
        ),
        (
            "/v1/bid",
            body_of({**BID_IMP, "floor_price": -1}),
            ["body", "impressions", 0, "floor_price"],
        ),
        (
            "/v1/bid",
            body_of({k: v for k, v in BID_IMP.items() if k != "impression_id"}),
            ["body", "impressions", 0, "impression_id"],
        ),
        (
            "/v1/bid",
            body_of({**BID_IMP, "auction_type": "third"}),
            ["body", "impressions", 0, "auction_type"],
        ),
        (
            "/v1/bid",
            {"impressions": [BID_IMP], "campaigns": [{**CAMPAIGN, "goal": "roas"}]},
            ["body", "campaigns", 0],
        ),
        ("/v1/bid", {"impressions": [BID_IMP], "campaigns": [CAMPAIGN, CAMPAIGN]}, ["body"]),
        (
            "/v1/bid",
            {"impressions": [BID_IMP], "campaigns": [{**CAMPAIGN, "max_bid": 0}]},
            ["body", "campaigns", 0, "max_bid"],
        ),
    ],
)
def test_bad_input_gets_the_standard_422(live: Server, path: str, body: Any, loc: list) -> None:
    raw = body if isinstance(body, str) else json.dumps(body)
    r = post_raw(live, path, raw)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert any(d["loc"][: len(loc)] == loc for d in detail), detail
    assert all({"loc", "msg", "type"} <= set(d) for d in detail)


@pytest.mark.parametrize("path", ["/v1/predict", "/v1/bid"])
def test_hot_endpoints_take_json_only_and_report_bad_json_as_fastapi_does(
    live: Server, path: str
) -> None:
    """The per-impression endpoints validate the raw body (lane.JsonBodyRoute): a body
    that is not declared JSON, or is not JSON, gets the same 422 as FastAPI's own handler."""
    good = body_of(BID_IMP) if path == "/v1/bid" else {"impressions": [IMP]}
    raw = json.dumps(good)
    assert post_raw(live, path, raw).status_code == 200  # the body itself is fine
    for headers in ({"content-type": "text/plain"}, {"content-type": ""}):
        r = post_raw(live, path, raw, headers=headers)
        assert r.status_code == 422, r.text
        assert r.json()["detail"][0]["loc"] == ["body"]
        assert "Content-Type: application/json" in r.json()["detail"][0]["msg"]
    r = post_raw(live, path, raw, headers={"content-type": "application/vnd.x+json; charset=utf-8"})
    assert r.status_code == 200, r.text
    r = post_raw(live, path, b'{"impressions": [\xff')
    assert r.status_code == 422 and r.json()["detail"][0]["loc"][0] == "body"


def test_json_body_route_refuses_endpoints_it_cannot_call() -> None:
    router = APIRouter(route_class=JsonBodyRoute)

    async def extra(body: PredictRequest, request: Request, limit: int = 3) -> None:
        return None

    with pytest.raises(
        TypeError, match=r"/x: JsonBodyRoute needs .*\['body', 'request', 'limit'\]"
    ):
        router.add_api_route("/x", extra, methods=["POST"])


@pytest.mark.parametrize("path", ["/v1/predict", "/v1/bid"])
def test_only_posts_to_the_hot_paths_skip_the_router(live: Server, path: str) -> None:
    """lane.Lane hands POST /v1/predict and /v1/bid straight to their handlers;
    other methods and the slash-suffixed path still get the router's answers, and the direct
    requests are counted in /metrics like any other."""
    assert live.client.get(path).status_code == 405
    assert live.client.put(path, json={}).status_code == 405
    slashed = live.client.post(path + "/", json={"impressions": [BID_IMP]})
    assert slashed.status_code == 307 and slashed.headers["location"].endswith(path)
    before = _count(live, path, "422")
    assert post_raw(live, path, "{}").status_code == 422
    assert _count(live, path, "422") == before + 1


def test_a_body_arriving_in_pieces_is_read_whole(live: Server) -> None:
    """The direct lane reads the body itself: with Content-Length and in two TCP segments (the
    server sees two body messages), and chunked without Content-Length."""
    body = json.dumps(body_of(BID_IMP)).encode()
    expected = live.client.post("/v1/bid", content=body, headers=JSON).json()
    assert expected["bids"][0]["bid"] is True
    host, port = live.base_url.removeprefix("http://").split(":")
    head = (
        f"POST /v1/bid HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(head + body[:40])
        time.sleep(0.2)
        sock.sendall(body[40:])
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    status, _, rest = raw.partition(b"\r\n")
    assert status == b"HTTP/1.1 200 OK", raw
    assert json.loads(rest.partition(b"\r\n\r\n")[2]) == expected

    def pieces():  # no Content-Length: chunked transfer encoding
        yield body[:40]
        yield body[40:]

    r = live.client.post("/v1/bid", content=pieces(), headers=JSON)
    assert r.status_code == 200 and r.json() == expected


def _count(live: Server, path: str, status: str) -> float:
    needle = f'bidopt_requests_total{{endpoint="{path}",status="{status}"}} '
    for line in live.client.get("/metrics").text.splitlines():
        if line.startswith(needle):
            return float(line[len(needle) :])
    return 0.0


@pytest.mark.parametrize("otel", [False, True])
def test_the_app_hands_the_hot_paths_to_the_middleware(tmp_path: Any, otel: bool) -> None:
    """The wiring itself: the responses are the same either way, so only this shows the
    direct lane is in use (FastAPI wraps included routers, so app.routes would not have it),
    and where the service's layers sit: outside FastAPI's stack, or inside it with OTel on."""
    from starlette.middleware.errors import ServerErrorMiddleware

    from serving.app import create_app
    from serving.lane import Lane
    from serving.middleware import BodyLimit, RequestMetrics
    from serving.settings import BidoptSettings

    settings = BidoptSettings(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", otel=otel)
    app = create_app(settings)
    layers, layer = [], app.build_middleware_stack()
    while layer is not None and len(layers) < 20:
        layers.append(layer)
        layer = getattr(layer, "app", None)
    kinds = [type(x) for x in layers]
    [lane] = [x for x in layers if isinstance(x, Lane)]
    assert set(lane.handlers) == {"/v1/predict", "/v1/bid", "/v1/events", "/openrtb2/bid"}
    ours = [kinds.index(k) for k in (Lane, RequestMetrics, BodyLimit)]
    assert ours == sorted(ours) and ours[2] - ours[0] == 2
    errors_at = kinds.index(ServerErrorMiddleware)
    assert (ours[0] == 0 and errors_at == 3) if not otel else (errors_at < ours[0])


def test_direct_handlers_serve_post_only() -> None:
    router = APIRouter(route_class=JsonBodyRoute)

    async def score(body: PredictRequest, request: Request) -> None:
        return None

    router.add_api_route("/p", score, methods=["POST"])
    assert list(direct_handlers(router.routes)) == ["/p"]
    router.add_api_route("/q", score, methods=["PUT"])
    with pytest.raises(TypeError, match="/q: a JsonBodyRoute serves POST only"):
        direct_handlers(router.routes)


@pytest.mark.parametrize("bad", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_prices_are_422(live: Server, bad: str) -> None:
    raw = json.dumps(body_of(BID_IMP)).replace('"floor_price": 0.0', f'"floor_price": {bad}')
    assert bad in raw
    r = post_raw(live, "/v1/bid", raw)
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == ["body", "impressions", 0, "floor_price"]
    raw = json.dumps({"impressions": [IMP]}).replace(
        '"channel"', f'"user_secs_since_last_imp": {bad}, "channel"'
    )
    assert post_raw(live, "/v1/predict", raw).status_code == 422


def test_body_over_one_mib_is_413(live: Server) -> None:
    big = json.dumps({"impressions": [{**IMP, "publisher": "x" * 200}] * 6000})
    assert len(big) > 1 << 20
    r = post_raw(live, "/v1/predict", big)
    assert r.status_code == 413
    assert r.json() == {
        "detail": "request body is larger than the limit of 1048576 bytes",
        "field": "body",
    }

    def chunks():  # no Content-Length: the server must count while reading
        for _ in range(20):
            yield b" " * 65536

    r = live.client.post(
        "/v1/predict", content=chunks(), headers={"content-type": "application/json"}
    )
    assert r.status_code == 413 and r.json()["field"] == "body"


def test_too_many_impressions_is_413_naming_the_limit(live: Server) -> None:
    r = live.client.post("/v1/predict", json={"impressions": [IMP] * 1001})
    assert r.status_code == 413
    assert r.json() == {
        "detail": "1001 impressions in one request; the limit is 1000",
        "field": "impressions",
    }
    r = live.client.post("/v1/bid", json={"impressions": [BID_IMP] * 1001, "campaigns": [CAMPAIGN]})
    assert r.status_code == 413 and r.json()["field"] == "impressions"


def test_admin_reload_needs_the_key(live: Server) -> None:
    assert httpx.post(live.base_url + "/admin/reload").status_code == 401
    r = live.client.post("/admin/reload", headers={"X-API-Key": "wrong-key-0123456789"})
    assert r.status_code == 401
    assert r.json() == {"detail": "missing or invalid API key", "field": "X-API-Key"}
    r = live.client.post("/admin/reload", headers={"X-API-Key": API_KEY})
    assert r.status_code == 200, r.text
    assert r.json()["changed"] is False and r.json()["error"] is None


def test_metrics(live: Server) -> None:
    live.client.post("/v1/predict", json={"impressions": [IMP]})
    live.client.post("/v1/bid", json={"impressions": [BID_IMP], "campaigns": [CAMPAIGN]})
    r = live.client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    for needle in (
        'bidopt_requests_total{endpoint="/v1/predict",status="200"}',
        'bidopt_request_latency_seconds_bucket{endpoint="/v1/bid",le="0.005"}',
        'bidopt_prediction_count{model="ctr"}',
        'bidopt_model_version{model="ctr",name="bidopt-ctr"}',
        'bidopt_model_reloads_total{model="ctr",outcome="failure"} 0.0',
        'bidopt_bids_total{outcome="bid"}',
        "bidopt_ready 1.0",
    ):
        assert needle in text, needle


def test_openapi_declares_errors_and_examples(live: Server) -> None:
    spec = live.client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    for path in ("/v1/predict", "/v1/bid", "/v1/events", "/openrtb2/bid", "/admin/reload"):
        responses = spec["paths"][path]["post"]["responses"]
        assert {"408", "413"} <= set(responses), path
        assert path == "/admin/reload" or {"400", "422"} & set(responses), path
    assert {"401", "403"} <= set(spec["paths"]["/admin/reload"]["post"]["responses"])
    assert "503" in spec["paths"]["/v1/bid"]["post"]["responses"]
    for path, ops in spec["paths"].items():
        for op in ops.values():
            ref = (op.get("requestBody") or op["responses"]["200"])["content"]
            media = next(iter(ref.values()))
            if "$ref" not in media.get("schema", {}):
                continue  # /metrics: plain text
            name = media["schema"]["$ref"].rsplit("/", 1)[1]
            assert schemas[name].get("examples"), f"{path}: {name} has no example"
    assert live.client.get("/docs").status_code == 200


def test_a_body_that_stops_arriving_is_cut_with_408(live: Server) -> None:
    """Half a body, then nothing: after BIDOPT_BODY_TIMEOUT_S (default 5 s) the server answers
    408 and closes, instead of holding the connection; the answer is counted in /metrics."""
    before = _count(live, "/v1/bid", "408")
    body = json.dumps(body_of(BID_IMP)).encode()
    host, port = live.base_url.removeprefix("http://").split(":")
    head = (
        f"POST /v1/bid HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    started = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(head + body[: len(body) // 2])
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
            if b"\r\n\r\n" in raw and raw.endswith(b"}"):
                break
    waited = time.monotonic() - started
    status, _, rest = raw.partition(b"\r\n")
    assert status == b"HTTP/1.1 408 Request Timeout", raw
    assert json.loads(rest.partition(b"\r\n\r\n")[2]) == {
        "detail": "the request body did not arrive within 5 s",
        "field": "body",
    }
    assert 4.5 <= waited < 25
    assert _count(live, "/v1/bid", "408") == before + 1
