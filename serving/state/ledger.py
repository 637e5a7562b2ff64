"""The ledger writer: every decision and every accepted event appended to segment files by a
background thread, never by the request path.

A decision is serialised and framed where it is made, on the event loop (about 5 µs hot: orjson,
while its dicts are still in cache), and its bytes appended to a queue; the writer drains the queue,
joins and writes it at least every `flush_ms`, so a SIGKILL loses at most that interval of
decisions. (Handing references to the writer thread instead bought no parallelism, the GIL
serialises both threads, and cost more: the writer framed cold dicts in ~10 µs each, and at 200 ms a
burst of ~550 of them held a one-core server's loop for milliseconds: /v1/bid's p99 under wrk was
8.3-11.9 ms against 6.4-7.5 ms at 20 ms, bench/serve_ab.py.) The writer's own share of the GIL is a
drain, a join and a `write` call, which releases it while the kernel copies. Events move money, so
`log_events` returns only once they are written and fsync'ed (group commit: one fsync covers every
event waiting at that moment), and the caller answers 200 only then. Each process writes its own
segments (`<start ns>-<pid>.seg`), so workers share no lock.

If the directory cannot be written (disk full, directory removed), the writer marks the ledger
unavailable with the reason: the service then stops bidding (`ledger_unavailable`), /readyz is
false and events get a 503, rather than spend money it cannot account for. It retries every
second and resumes in a new segment once writing works again.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from features.ledger import DECISION, EVENT, SEGMENT_SUFFIX, frame

log = logging.getLogger("bidopt.ledger")

RETRY_S: Final = 1.0
SEGMENT_BYTES: Final = 64 << 20


class LedgerUnavailable(RuntimeError):
    """The ledger cannot be written now; the message says why."""


class Ledger:
    def __init__(self, directory: Path, *, flush_ms: float = 20.0) -> None:
        self.directory = directory
        self.flush_s = flush_ms / 1000.0
        self.reason: str | None = None  # why it is unavailable; None when it is fine
        # framed decisions not yet written: appended by the loop, drained by the writer (a
        # deque's append and popleft are atomic under the GIL: no lock). One bytes object per
        # decision, joined by the writer: appending to one growing buffer instead re-copied it
        # on every resize, through the request path's cache
        self._pending: deque[bytes] = deque()
        self._events: deque[tuple[list[dict[str, Any]], asyncio.Future[None], Any]] = deque()
        self._wake = threading.Event()
        self._stop = False
        self._file: Any = None
        self._path = directory
        self._written = 0
        self._thread: threading.Thread | None = None
        self.decisions_written = 0
        self.events_written = 0

    @property
    def available(self) -> bool:
        return self.reason is None

    # -- the request side -----------------------------------------------------------------------

    def log_decision(
        self,
        t: float,
        source: str,
        request: Mapping[str, Any],
        result: Mapping[str, Any],
        versions: Mapping[str, Any],
        weight: float = 1.0,
    ) -> None:
        """Serialise one decision and hand its bytes to the writer (module docstring: why here)."""
        self._pending.append(
            frame(
                {
                    "k": DECISION,
                    "t": int(t * 1_000_000),
                    "src": source,
                    "req": request,
                    "out": result,
                    "models": versions,
                    "w": weight,
                }
            )
        )

    async def log_events(self, records: Sequence[dict[str, Any]]) -> None:
        """Return once `records` are durable (written and fsync'ed); LedgerUnavailable if not."""
        if self.reason is not None:
            raise LedgerUnavailable(self.reason)
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._events.append(([{"k": EVENT, **r} for r in records], done, loop))
        self._wake.set()
        await done

    # -- the writer thread ----------------------------------------------------------------------

    def start(self) -> None:
        """Open the first segment (LedgerUnavailable if the directory cannot be written) and
        start the writer thread."""
        try:
            self._open()
        except OSError as e:
            self.reason = f"cannot write the ledger at {self.directory}: {e.strerror or e}"
            log.error("%s", self.reason)
        self._thread = threading.Thread(target=self._run, name="bidopt-ledger", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()

    def _open(self, *, create: bool = True) -> None:
        """A new segment. The directory is created at start only: one that disappears later
        (an operator's rm, a lost mount) keeps the ledger unavailable until it is back, rather
        than be silently recreated without the segments it held."""
        if create:
            self.directory.mkdir(parents=True, exist_ok=True)
        name = f"{time.time_ns():020d}-{os.getpid()}{SEGMENT_SUFFIX}"
        self._path = self.directory / name
        self._file = open(self._path, "ab", buffering=0)  # noqa: SIM115
        self._written = 0

    def _run(self) -> None:
        while True:
            self._wake.wait(self.flush_s)
            self._wake.clear()
            stopping = self._stop
            try:
                if self.reason is not None:
                    self._recover()
                if self.reason is None:
                    self._flush()
            except OSError as e:
                self._fail(f"cannot write the ledger at {self.directory}: {e.strerror or e}")
            if stopping:
                return
            if self.reason is not None:
                time.sleep(RETRY_S)

    def _recover(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None
        self._open(create=False)
        log.warning("ledger writable again at %s: bidding resumes", self.directory)
        self.reason = None

    def _flush(self) -> None:
        decisions = _drain(self._pending)
        events = _drain(self._events)
        if not decisions and not events:
            return
        chunks = decisions + [frame(r) for records, _, _ in events for r in records]
        data = b"".join(chunks)
        try:
            if not os.path.exists(self._path):  # an unlinked file takes writes and keeps none
                raise FileNotFoundError(errno.ENOENT, "segment or directory removed", self._path)
            self._write_all(data)
            if events:
                os.fsync(self._file.fileno())
        except OSError as e:
            self._fail(f"cannot write the ledger at {self.directory}: {e.strerror or e}", events)
            return
        self._written += len(data)
        self.decisions_written += len(decisions)
        for records, done, loop in events:
            self.events_written += len(records)
            loop.call_soon_threadsafe(_resolve, done, None)
        if self._written >= SEGMENT_BYTES:
            self._file.close()
            self._open()

    def _write_all(self, data: bytes) -> None:
        """Write `data` whole or not at all: a short write (a full disk) is cut back to the
        last whole record, so a record torn by it cannot hide the ones written after it."""
        written = 0
        view = memoryview(data)  # slices of it are not copies
        try:
            while written < len(data):
                n = self._file.write(view[written:])
                if not n:
                    raise OSError(errno.ENOSPC, "no space left on device (short write)")
                written += n
        except OSError:
            if written:
                with contextlib.suppress(OSError):
                    os.ftruncate(self._file.fileno(), self._written)
            raise

    def _fail(self, reason: str, events: Sequence[tuple[Any, ...]] = ()) -> None:
        if self.reason is None:
            log.error("%s: bidding stops until it can be written", reason)
        self.reason = reason
        for _, done, loop in [*events, *_drain(self._events)]:
            loop.call_soon_threadsafe(_resolve, done, LedgerUnavailable(reason))


def _drain(queue: deque[Any]) -> list[Any]:
    out = []
    while queue:
        out.append(queue.popleft())
    return out


def _resolve(done: asyncio.Future[None], error: BaseException | None) -> None:
    if done.done():
        return
    if error is None:
        done.set_result(None)
    else:
        done.set_exception(error)
