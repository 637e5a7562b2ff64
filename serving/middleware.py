"""The service's two pure-ASGI middlewares, each with one job (Starlette's shape: a small class
wrapping an `ASGIApp`; no `BaseHTTPMiddleware`, which costs a task and a stream copy per request).

- `RequestMetrics` counts every answer by endpoint and status, with its latency, including the
  500 that Starlette's outer error middleware sends for an unexpected exception.
- `BodyLimit` makes a request body arrive whole, bounded in size (413, before anything is read
  when Content-Length says so) and in time (408 when the client stops sending: a half-sent body
  would otherwise hold its connection and a worker's memory forever). The body it has read is
  left in the scope for the fast lane and replayed to the router.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any, Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.errors import BodyTimeout, BodyTooLarge, ServingError, error_response
from serving.metrics import ENDPOINTS, OTHER, HandlingTimes, Metrics

BODY_KEY: Final = "bidopt.body"
BODY_METHODS: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})
RTB_PATH: Final = "/openrtb2/bid"


class RequestMetrics:
    def __init__(self, app: ASGIApp, *, metrics: Metrics, rtb_times: HandlingTimes) -> None:
        self.app = app
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
        observe = self.metrics.observe_request

        async def send_wrapper(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                elapsed = time.perf_counter() - start
                observe(endpoint, message["status"], elapsed)
                if endpoint == RTB_PATH:
                    self.rtb_times.observe(elapsed)
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception:
            if not started:  # the outer middleware answers 500; counted here
                observe(endpoint, 500, time.perf_counter() - start)
            raise


class BodyLimit:
    def __init__(self, app: ASGIApp, *, max_bytes: int, timeout_s: float) -> None:
        self.app = app
        self.limit = max_bytes
        self.timeout_s = timeout_s
        # Bodies being read, by task, with their deadline; one watchdog cancels the late ones.
        # (An asyncio.timeout per request cost ~20 µs of a one-impression bid in process; this
        # costs a dict insert and delete, and fires within a second after the deadline.)
        self._reading: dict[asyncio.Task[Any], float] = {}
        self._late: set[asyncio.Task[Any]] = set()
        self._watchdog: asyncio.Task[None] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in BODY_METHODS:
            await self.app(scope, receive, send)
            return
        length = _content_length(scope)
        try:
            if length is not None and length > self.limit:
                raise BodyTooLarge(self.limit)
            body = await self._read(receive)
        except ServingError as exc:
            await error_response(exc.status_code, exc.detail, exc.field)(scope, receive, send)
            return
        if body is None:
            return  # the client left before sending its body: nobody to answer
        scope[BODY_KEY] = body
        await self.app(scope, _replay(body, receive), send)

    async def _read(self, receive: Receive) -> bytes | None:
        """The whole body, at most `limit` bytes, within `timeout_s`."""
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        self._reading[task] = loop.time() + self.timeout_s
        watchdog = self._watchdog
        if watchdog is None or watchdog.done() or watchdog.get_loop() is not loop:
            self._watchdog = loop.create_task(self._watch(), name="bidopt-body-timeout")
        chunks: list[bytes] = []
        size = 0
        try:
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    return None
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > self.limit:
                    raise BodyTooLarge(self.limit)
                if not message.get("more_body", False):
                    if not chunks:
                        return chunk
                    chunks.append(chunk)
                    return b"".join(chunks)
                chunks.append(chunk)
        except asyncio.CancelledError:
            if task not in self._late:
                raise  # cancelled by someone else: not ours to answer
            self._late.discard(task)
            task.uncancel()
            raise BodyTimeout(self.timeout_s) from None
        finally:
            self._reading.pop(task, None)

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(min(1.0, self.timeout_s / 2))
            now = loop.time()
            for task, deadline in list(self._reading.items()):
                if now >= deadline and task not in self._late:
                    self._late.add(task)
                    task.cancel()


def _content_length(scope: Scope) -> int | None:
    """The first Content-Length, as Starlette's Headers.get reads it; None if absent or bad."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            with contextlib.suppress(ValueError):
                return int(value)
            return None
    return None


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
