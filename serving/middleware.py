"""What every request gets, whichever way it goes: counted, and its body read within bounds.
Each is a small object the fast lane (`lane.Lane`, which answers its POSTs without these
middlewares) and a pure-ASGI middleware for every other request share (Starlette's shape: a
class wrapping an `ASGIApp`; no `BaseHTTPMiddleware`, which costs a task and a stream copy per
request).

- `Observer` counts an answer by endpoint and status, with its latency; `RequestMetrics` calls
  it for every request, including the 500 that Starlette's outer error middleware sends for an
  unexpected exception.
- `BodyReader` reads a request body whole, bounded in size (413, before anything is read when
  Content-Length says so) and in time (408 when the client stops sending: a half-sent body
  would otherwise hold its connection and a worker's memory forever); `BodyLimit` reads every
  body with it and replays it to the router.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.errors import BodyTimeout, BodyTooLarge, ServingError, error_response
from serving.metrics import ENDPOINTS, OTHER, HandlingTimes, Metrics

BODY_METHODS: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})
RTB_PATH: Final = "/openrtb2/bid"


class Observer:
    """One answer counted: endpoint (the path, or "other"), status and seconds to its start."""

    def __init__(self, metrics: Metrics, rtb_times: HandlingTimes) -> None:
        self._observe = metrics.observe_request
        self._rtb = rtb_times.observe
        self._known = frozenset(ENDPOINTS)

    def __call__(self, path: str, status: int, seconds: float) -> None:
        if path == RTB_PATH:
            self._rtb(seconds)
        self._observe(path if path in self._known else OTHER, status, seconds)


class RequestMetrics:
    def __init__(self, app: ASGIApp, *, observer: Observer) -> None:
        self.app = app
        self.observer = observer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        path = scope["path"]
        started = False
        observe = self.observer

        async def send_wrapper(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                observe(path, message["status"], time.perf_counter() - start)
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception:
            if not started:  # the outer middleware answers 500; counted here
                observe(path, 500, time.perf_counter() - start)
            raise


class BodyReader:
    def __init__(self, *, max_bytes: int, timeout_s: float) -> None:
        self.limit = max_bytes
        self.timeout_s = timeout_s
        # Bodies being read, by task, with their deadline; one watchdog cancels the late ones.
        # (An asyncio.timeout per request cost ~20 µs of a one-impression bid in process; this
        # costs a dict insert and delete, and fires within a second after the deadline.)
        self._reading: dict[asyncio.Task[Any], float] = {}
        self._late: set[asyncio.Task[Any]] = set()
        self._watchdog: asyncio.Task[None] | None = None

    async def read(self, scope: Scope, receive: Receive) -> bytes | None:
        """The whole body, at most `max_bytes`, within `timeout_s`; None if the client left
        first (nobody to answer). Raises BodyTooLarge or BodyTimeout."""
        length = _content_length(scope)
        if length is not None and length > self.limit:
            raise BodyTooLarge(self.limit)
        task = asyncio.current_task()
        assert task is not None
        loop = task.get_loop()
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


class BodyLimit:
    def __init__(self, app: ASGIApp, *, reader: BodyReader) -> None:
        self.app = app
        self.reader = reader

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in BODY_METHODS:
            await self.app(scope, receive, send)
            return
        try:
            body = await self.reader.read(scope, receive)
        except ServingError as exc:
            await error_response(exc.status_code, exc.detail, exc.field)(scope, receive, send)
            return
        if body is None:
            return  # the client left before sending its body: nobody to answer
        await self.app(scope, replay(body, receive), send)


def _content_length(scope: Scope) -> int | None:
    """The first Content-Length, as Starlette's Headers.get reads it; None if absent or bad."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:  # (not contextlib.suppress: its object per request cost a third of the read)
                return int(value)
            except ValueError:
                return None
    return None


def replay(body: bytes, upstream: Receive) -> Receive:
    """Hand the already-read body to the app, then pass on whatever comes next (disconnect)."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await upstream()

    return receive
