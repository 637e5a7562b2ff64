"""Every answer is counted in bidopt_requests_total (by the lane for its POSTs, by
middleware.RequestMetrics for the rest), also the 500 that the outer server-error middleware
(or the lane) sends for an unexpected exception (no input of the real service
raises one: the schemathesis run holds that; these tests raise one on purpose)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.app import create_app
from serving.lane import Lane
from serving.metrics import HandlingTimes, Metrics
from serving.middleware import BodyLimit, BodyReader, Observer, RequestMetrics
from serving.settings import BidoptSettings


def count(metrics: Metrics, endpoint: str, status: str) -> float:
    value = metrics.registry.get_sample_value(
        "bidopt_requests_total", {"endpoint": endpoint, "status": status}
    )
    return value or 0.0


def call(mw: ASGIApp, path: str) -> list[Message]:
    scope: Scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "headers": [(b"content-type", b"application/json"), (b"content-length", b"2")],
        "query_string": b"",
    }
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(mw(scope, receive, send))
    return sent


def middleware(inner_fails_after_start: bool = False) -> tuple[ASGIApp, Metrics]:
    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        if inner_fails_after_start:
            await send({"type": "http.response.start", "status": 200, "headers": []})
        raise RuntimeError("inner app failed")

    async def direct(request: Request, body: bytes, content_type: str | None) -> Response:
        raise RuntimeError("handler failed")

    metrics = Metrics()
    observer = Observer(metrics, HandlingTimes())
    reader = BodyReader(max_bytes=1 << 20, timeout_s=5.0)
    behind = RequestMetrics(BodyLimit(inner, reader=reader), observer=observer)
    return Lane(behind, handlers={"/v1/bid": direct}, reader=reader, observer=observer), metrics


def test_an_exception_in_a_direct_handler_is_counted_as_500_and_propagates() -> None:
    mw, metrics = middleware()
    with pytest.raises(RuntimeError, match="handler failed"):
        call(mw, "/v1/bid")
    assert count(metrics, "/v1/bid", "500") == 1.0


def test_an_exception_before_the_response_starts_is_counted_as_500() -> None:
    mw, metrics = middleware()
    with pytest.raises(RuntimeError, match="inner app failed"):
        call(mw, "/v1/predict")  # not in `direct`: through the inner app
    assert count(metrics, "/v1/predict", "500") == 1.0


def test_an_exception_after_the_response_started_keeps_its_status() -> None:
    mw, metrics = middleware(inner_fails_after_start=True)
    with pytest.raises(RuntimeError):
        call(mw, "/v1/predict")
    assert count(metrics, "/v1/predict", "200") == 1.0
    assert count(metrics, "/v1/predict", "500") == 0.0


def test_the_whole_app_answers_500_and_counts_it(tmp_path: Path) -> None:
    app = create_app(BidoptSettings(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}"))

    async def boom() -> None:
        raise RuntimeError("route failed")

    app.add_api_route("/boom", boom, methods=["GET"])

    async def run() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
            return await c.get("/boom")

    r = asyncio.run(run())
    assert r.status_code == 500
    assert count(app.state.metrics, "other", "500") == 1.0


def test_a_fast_lane_handler_that_fails_is_a_counted_500(tmp_path: Path) -> None:
    """The lane sits outside Starlette's server-error middleware (serving.app): it answers the
    same plain 500 itself, counted, and the exception goes on to the server."""
    app = create_app(BidoptSettings(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}"))

    async def boom(request: object, body: bytes, content_type: str | None) -> None:
        raise RuntimeError("handler failed")

    app.state.lane_handlers["/v1/predict"] = boom

    async def run() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
            return await c.post("/v1/predict", json={"impressions": []})

    r = asyncio.run(run())
    assert (r.status_code, r.text) == (500, "Internal Server Error")
    assert r.headers["content-type"].startswith("text/plain")
    assert count(app.state.metrics, "/v1/predict", "500") == 1.0
