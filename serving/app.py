"""create_app(settings): the FastAPI app, whose lifespan owns the models.

The lifespan starts the `ModelHolder` loop (initial load with back-off, then alias polling) and
returns at once, so /healthz answers while the models load and /readyz says when they are in.
One pure-ASGI middleware does the per-request work every route shares: refusing bodies over the
size limit (413, before anything is read) and recording request count and latency. It also hands
`POST /v1/predict` and `POST /v1/bid` straight to their handlers (`bodyroute.direct_handlers`):
FastAPI's router matches a path against every route through several layers, which cost a quarter
of a one-impression bid in process (205 -> 151 µs; +20% req/s in a wrk A/B). On that lane the
middleware also reads the body and sends the response's two messages itself, instead of
Starlette's request stream, `Response.__call__` and a send wrapper (+11.5% req/s, wrk A/B). Every
other request, and other methods on those paths (405), still go through the router.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Mapping
from typing import Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving import errors, routes, rtb
from serving.bodyroute import DirectHandler, direct_handlers
from serving.budgets import BudgetKeeper
from serving.campaign_book import CampaignBook
from serving.metrics import ENDPOINTS, OTHER, HandlingTimes, Metrics
from serving.registry import Registry, read_winrate
from serving.reload import ModelHolder
from serving.settings import BidoptSettings
from serving.state import make_store

log = logging.getLogger("bidopt.serving")

DESCRIPTION: Final = """\
Calibrated pCTR / pCVR and bid prices per impression, from the models registered in MLflow
(`bidopt-ctr@champion`, `bidopt-cvr@champion` by default).

Prices are CPM in the account currency. Validation errors use FastAPI's standard 422 body;
other client errors are `{"detail": reason, "field": name}`.
"""


class ServiceMiddleware:
    """Body-size limit, request metrics and the direct lane to the per-impression handlers, as
    one plain ASGI wrapper (no per-request task or stream copy, unlike BaseHTTPMiddleware)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        metrics: Metrics,
        rtb_times: HandlingTimes,
        direct: Mapping[str, DirectHandler],
    ) -> None:
        self.app = app
        self.direct = direct
        self.limit = max_body_bytes
        self.metrics = metrics
        self.rtb_times = rtb_times
        self.known = frozenset(ENDPOINTS)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        path = scope["path"]
        endpoint = path if path in self.known else OTHER
        started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                elapsed = time.perf_counter() - start
                self.metrics.observe_request(endpoint, status, elapsed)
                if endpoint == "/openrtb2/bid":
                    self.rtb_times.observe(elapsed)
            await send(message)

        length, content_type = _head(scope)
        if length is not None and length > self.limit:
            await errors.error_response(413, *_too_large(self.limit))(scope, receive, send_wrapper)
            return
        body = None
        if length is None and scope["method"] in ("POST", "PUT", "PATCH"):
            body = await _read_limited(receive, self.limit)
            if body is None:
                await errors.error_response(413, *_too_large(self.limit))(
                    scope, receive, send_wrapper
                )
                return
            receive = _replay(body, receive)
        handler = self.direct.get(path)
        if handler is not None and scope["method"] == "POST":
            if body is None:
                body = await _read_all(receive)
                if body is None:
                    return
            request = Request(scope, receive)
            try:
                response = await handler(request, body, content_type)
            except (errors.ServingError, RequestValidationError) as exc:  # as the app's handlers
                response = errors.render(request, exc)
            except Exception:  # the outer middleware answers 500; counted here
                self.metrics.observe_request(endpoint, 500, time.perf_counter() - start)
                raise
            # the response's two messages sent as Response.__call__ would, without its wrappers
            # (no background tasks here)
            status = response.status_code
            self.metrics.observe_request(endpoint, status, time.perf_counter() - start)
            await send(
                {"type": "http.response.start", "status": status, "headers": response.raw_headers}
            )
            await send({"type": "http.response.body", "body": response.body})
            return
        try:
            await self.app(scope, receive, send_wrapper)
        except Exception:
            if not started:  # the outer middleware answers 500; counted here
                self.metrics.observe_request(endpoint, 500, time.perf_counter() - start)
            raise


def _too_large(limit: int) -> tuple[str, str]:
    return f"request body is larger than the limit of {limit} bytes", "body"


def _head(scope: Scope) -> tuple[int | None, str | None]:
    """The first Content-Length (None if absent or not a number) and the first Content-Type,
    as Starlette's Headers.get reads them, in one pass."""
    length: int | None = None
    content_type: str | None = None
    seen_length = False
    for name, value in scope["headers"]:
        if name == b"content-length" and not seen_length:
            seen_length = True
            with contextlib.suppress(ValueError):
                length = int(value)
        elif name == b"content-type" and content_type is None:
            content_type = value.decode("latin-1")
    return length, content_type


async def _read_all(receive: Receive) -> bytes | None:
    """The body of a request whose Content-Length is within the limit; None if the client
    disconnected first (nobody to answer)."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _read_limited(receive: Receive, limit: int) -> bytes | None:
    """A body without Content-Length (chunked): read it, but never more than `limit` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, upstream: Receive) -> Receive:
    """Hand the already-read body to the app, then pass on whatever comes next (disconnect)."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await upstream()

    return receive


async def state_loop(service: routes.Service, interval: float) -> None:
    """Poll the campaigns file, step pacing when due, refresh the budget snapshot; never dies."""
    while True:
        try:
            service.poll_campaigns()
            await asyncio.to_thread(service.keeper.tick)
        except Exception:  # a store or file hiccup must not stop budgets being refreshed
            log.exception("state refresh failed; retrying in %.1f s", interval)
        service.sync_state_metrics()
        await asyncio.sleep(interval)


def create_app(settings: BidoptSettings) -> FastAPI:
    """Raises CampaignError (invalid campaigns file) or ValueError (invalid win-rate file):
    the service must not start on either."""
    metrics = Metrics()
    holder = ModelHolder(settings, Registry(settings.tracking_uri), metrics)
    book = CampaignBook(settings.campaigns_file)
    winrate = read_winrate(settings.winrate_file) if settings.winrate_file else None
    keeper = BudgetKeeper(make_store(settings.redis_url), book, settings.pacing_interval_s)
    secret = settings.win_secret.get_secret_value() if settings.win_secret else None
    service = routes.Service(
        settings=settings,
        holder=holder,
        metrics=metrics,
        book=book,
        keeper=keeper,
        winrate_override=winrate,
        win_secret=(secret or secrets.token_urlsafe(32)).encode(),
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        log.info(
            "loading %s and %s from %s",
            settings.model_uri(settings.ctr_model),
            settings.model_uri(settings.cvr_model),
            settings.tracking_uri,
        )
        task = asyncio.create_task(holder.run(), name="bidopt-model-reload")
        await asyncio.to_thread(keeper.tick)
        service.sync_state_metrics()
        state_task = asyncio.create_task(
            state_loop(service, settings.state_refresh_s), name="bidopt-state"
        )
        try:
            yield
        finally:
            for t in (task, state_task):
                t.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await t

    app = FastAPI(
        title="bidopt",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        telemetry=None if settings.otel else {"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    app.state.holder = holder
    app.state.metrics = metrics
    app.state.service = service
    errors.install(app)
    app.include_router(routes.hot_router)
    app.include_router(routes.router)
    app.include_router(rtb.router)
    app.add_middleware(
        ServiceMiddleware,
        max_body_bytes=settings.max_body_bytes,
        metrics=metrics,
        rtb_times=service.rtb_times,
        direct=direct_handlers(routes.hot_router.routes),
    )
    return app


def create_app_from_env() -> FastAPI:
    """Factory for uvicorn's worker processes: `bidopt serve` exported the settings as BIDOPT_*."""
    return create_app(BidoptSettings())
