"""create_app(settings): the middleware stack, the routers and the lifespan; nothing else.

Per request, outermost first: `lane.Lane` (JSON POSTs: body read, handler, answer counted, all
in one layer), `middleware.RequestMetrics` (counts every other answer), `middleware.BodyLimit`
(every other body whole, bounded in size and time), then FastAPI's own stack: Starlette's
server-error middleware (an unexpected exception is a 500), FastAPI's telemetry and body-limit
wrappers, its exception handlers (`errors.render`) and router. The service's three layers sit
outside FastAPI's (`ServingApp`), so a fast-lane POST skips FastAPI's wrappers as it skips the
router (13 µs of a one-impression bid's ~167 µs, measured in process), and the lane answers an
unexpected exception with the same 500 itself. With OpenTelemetry on (`BIDOPT_OTEL`) FastAPI's
telemetry must see every request, so the three layers go inside FastAPI's stack instead.

The lifespan starts the `ModelHolder` loop (initial load with back-off, then alias polling) and
the state loop, and returns at once, so /healthz answers while the models load and /readyz
says when they are in.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import secrets
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Final

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.middleware import Middleware
from starlette.routing import BaseRoute
from starlette.types import ASGIApp

from features.ledger import ReadStats
from features.ledger_store import read_ledger
from serving import errors
from serving.api import events, ops, scoring
from serving.lane import Lane, direct_handlers
from serving.metrics import Metrics
from serving.middleware import BODY_METHODS, BodyLimit, BodyReader, Observer, RequestMetrics
from serving.models.holder import ModelHolder
from serving.models.registry import Registry, read_winrate
from serving.openrtb import router as openrtb_router
from serving.openrtb import win
from serving.openrtb.schemas import country_code
from serving.service import Service, state_loop
from serving.settings import BidoptSettings
from serving.state.budgets import BudgetKeeper
from serving.state.campaigns import CampaignBook
from serving.state.compaction import compaction_loop
from serving.state.events import replay_ledger
from serving.state.fx import FxBook
from serving.state.ledger import Ledger
from serving.state.snapshot import SnapshotError, bulk_load, read_snapshot
from serving.state.store import InMemoryStore, make_store

log = logging.getLogger("bidopt.serving")

DESCRIPTION: Final = """\
Calibrated pCTR / pCVR and bid prices per impression, from the models registered in MLflow
(`bidopt-ctr@champion`, `bidopt-cvr@champion` by default).

Prices are CPM in the account currency. Validation errors use FastAPI's standard 422 body;
other client errors are `{"detail": reason, "field": name}`.
"""

ROUTERS: Final = (scoring.router, events.router, openrtb_router.router, win.router, ops.router)


def create_app(settings: BidoptSettings) -> FastAPI:
    """Raises CampaignError (invalid campaigns file), FxError (invalid FX file) or ValueError
    (invalid win-rate file): the service must not start on any."""
    metrics = Metrics()
    holder = ModelHolder(settings, Registry(settings.tracking_uri), metrics)
    fx = FxBook(settings.fx_file)
    country_code("FRA")  # load the ISO country table now, not on the first BidRequest
    book = CampaignBook(settings.campaigns_file, settings.account_currency, lambda: fx.table)
    winrate = read_winrate(settings.winrate_file) if settings.winrate_file else None
    keeper = BudgetKeeper(
        make_store(settings.redis_url), book, settings.pacing_interval_s, settings.workers
    )
    secret = settings.win_secret.get_secret_value() if settings.win_secret else None
    ledger = Ledger(settings.ledger_dir, flush_ms=settings.ledger_flush_ms)
    service = Service(
        settings=settings,
        holder=holder,
        metrics=metrics,
        book=book,
        keeper=keeper,
        ledger=ledger,
        fx=fx,
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
        if settings.api_key is None:
            log.warning(
                "no BIDOPT_API_KEY: event ingestion (/v1/events) is open to anyone who can "
                "reach %s, and /admin is off; set a key before listening beyond loopback",
                settings.host,
            )
        await asyncio.to_thread(rebuild_state, service)
        ledger.start()
        task = asyncio.create_task(holder.run(), name="bidopt-model-reload")
        await asyncio.to_thread(keeper.tick)
        service.sync_state_metrics()
        tasks = [
            task,
            asyncio.create_task(state_loop(service, settings.state_refresh_s), name="bidopt-state"),
        ]
        if settings.ledger_compact_s > 0:
            loop = compaction_loop(settings.ledger_dir, settings.ledger_compact_s)
            tasks.append(asyncio.create_task(loop, name="bidopt-ledger-compaction"))
        try:
            yield
        finally:
            for t in tasks:
                t.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await t
            await asyncio.to_thread(holder.close)
            await asyncio.to_thread(ledger.close)

    app = ServingApp(
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
    routes = [route for router in ROUTERS for route in router.routes]
    declare_body_errors(routes)
    for router in ROUTERS:
        app.include_router(router)
    handlers = direct_handlers(routes)
    app.state.lane_handlers = handlers  # the lane's (a test empties it to compare the router)

    observer = Observer(metrics, service.rtb_times)
    reader = BodyReader(max_bytes=settings.max_body_bytes, timeout_s=settings.body_timeout_s)
    ours = [  # outermost first, as Starlette's user_middleware
        Middleware(Lane, handlers=handlers, reader=reader, observer=observer),
        Middleware(RequestMetrics, observer=observer),
        Middleware(BodyLimit, reader=reader),
    ]
    if settings.otel:  # inside FastAPI's stack, so that its telemetry sees every request
        app.user_middleware[:0] = ours
    else:
        app.outer_middleware = ours
    return app


class ServingApp(FastAPI):
    """FastAPI with `outer_middleware` (the service's own layers) wrapped around its whole
    middleware stack instead of inside it (module docstring); built as Starlette builds its
    user middleware."""

    outer_middleware: Sequence[Middleware] = ()

    def build_middleware_stack(self) -> ASGIApp:
        app = super().build_middleware_stack()
        for cls, args, kwargs in reversed(self.outer_middleware):
            app = cls(app, *args, **kwargs)
        return app


def rebuild_state(service: Service) -> None:
    """In-process state (spend, event ids, user counters) and the performance window from the
    ledger: a restart must not forget what was spent. The snapshot (state.snapshot) holds the
    compacted segments; only the others are replayed. (With Redis, Redis keeps the shared view
    of spend; the performance window is this process's either way.)"""
    with bulk_load():
        _rebuild(service)
    gc.freeze()  # what was loaded lives as long as the process: out of every later collection


def _rebuild(service: Service) -> None:
    settings, keeper = service.settings, service.keeper
    started = time.perf_counter()
    local = keeper.store if isinstance(keeper.store, InMemoryStore) else None
    try:
        snap = read_snapshot(settings.ledger_dir)
    except SnapshotError as exc:
        log.warning("%s: replaying the whole ledger instead", exc)
        snap = None
    if snap is not None:
        if local is not None:
            local.adopt(snap.store)
        service.performance.adopt(snap.performance)
    stats = ReadStats()
    records = read_ledger(settings.ledger_dir, stats, skip=snap.covered if snap else ())
    count = replay_ledger(records, local, service.performance)
    if stats.records or snap is not None:
        log.info(
            "state rebuilt from the ledger at %s in %.2f s: a snapshot of %d segments (%d "
            "events), then %d events of %d records replayed",
            settings.ledger_dir,
            time.perf_counter() - started,
            len(snap.covered) if snap else 0,
            snap.events if snap else 0,
            count,
            stats.records,
        )


def declare_body_errors(routes: Iterable[BaseRoute]) -> None:
    """Every route with a body can get BodyLimit's 408 and 413: say so in its OpenAPI.
    (FastAPI wraps included routers, so these are the routers' own route objects.)"""
    body_errors = errors.responses_for(errors.BodyTimeout, errors.BodyTooLarge)
    for route in routes:
        if isinstance(route, APIRoute) and route.methods & BODY_METHODS:
            for status, entry in body_errors.items():
                route.responses.setdefault(status, entry)


def create_app_from_env() -> FastAPI:
    """Factory for uvicorn's worker processes: `bidopt serve` exported the settings as BIDOPT_*."""
    return create_app(BidoptSettings())
