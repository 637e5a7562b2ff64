"""The HTTP endpoints: thin handlers over Predictor, bidder and ModelHolder.

Handlers are `async def` (as are their dependencies) so that scoring runs on the event loop
thread: no thread-pool hop per request, and the FastPredictor buffers are never shared between
threads. The per-impression endpoints are on `hot_router` (`bodyroute.JsonBodyRoute`: the body
validated in pydantic's JSON mode, no dependency solving). Bodies are written with orjson into
a plain Response; the declared `response_model`s document them in OpenAPI and are what the
schemathesis test holds the responses to.
"""

from __future__ import annotations

import asyncio
import hmac
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import PlainTextResponse
from starlette.responses import Response

from bidding.winrate import WinRateModel
from serving import bidder
from serving.bodyroute import JsonBodyRoute
from serving.budgets import BudgetKeeper
from serving.campaign_book import CampaignBook, CampaignsStatus
from serving.dmp import fill_from_profile
from serving.errors import (
    AdminDisabled,
    NoCampaigns,
    NotReady,
    PayloadTooLarge,
    TooManyItems,
    Unauthorized,
    UnknownCampaign,
    responses_for,
)
from serving.events import EventsRequest, EventsResult, apply_events, check_campaigns
from serving.metrics import CONTENT_TYPE, HandlingTimes, Metrics
from serving.predictor import Predictor
from serving.reload import ModelHolder
from serving.schemas import (
    BidRequest,
    BidResponse,
    Health,
    Impression,
    ModelsStatus,
    PredictRequest,
    PredictResponse,
    Readiness,
    ReloadResult,
)
from serving.settings import BidoptSettings
from serving.state import InMemoryStore, ResilientStore

router = APIRouter()
# /v1/predict and /v1/bid: bodies validated in pydantic's JSON mode, endpoint called directly
hot_router = APIRouter(route_class=JsonBodyRoute)


@dataclass(frozen=True, slots=True)
class Service:
    """What handlers need besides the models, as one dependency (each dependency FastAPI
    resolves costs microseconds per request on the hot path)."""

    settings: BidoptSettings
    holder: ModelHolder
    metrics: Metrics
    book: CampaignBook
    keeper: BudgetKeeper
    winrate_override: WinRateModel | None = None
    win_secret: bytes = b""
    rng: random.Random = field(default_factory=random.Random)
    rtb_times: HandlingTimes = field(default_factory=HandlingTimes)

    def winrate(self, predictor: Predictor) -> WinRateModel | None:
        """BIDOPT_WINRATE_FILE if set, else the CTR bundle's winrate.json, else none."""
        return self.winrate_override or predictor.ctr.winrate

    def sync_state_metrics(self) -> None:
        self.metrics.state_degraded.set(1 if self.keeper.degraded else 0)
        self.metrics.campaigns_loaded.set(len(self.book.campaigns))

    def poll_campaigns(self) -> bool | None:
        changed = self.book.poll()
        if changed is not None:
            self.metrics.campaign_reloads.labels("success" if changed else "failure").inc()
            self.metrics.campaigns_loaded.set(len(self.book.campaigns))
        return changed


async def get_service(request: Request) -> Service:
    return request.app.state.service  # type: ignore[no-any-return]


async def get_predictor(request: Request) -> Predictor:
    """The pair to score this request with, read once: a swap mid-request does not affect it."""
    holder: ModelHolder = request.app.state.holder
    current = holder.current
    if current is None:
        raise NotReady(holder.not_ready_reason)
    return current


ServiceDep = Annotated[Service, Depends(get_service)]
PredictorDep = Annotated[Predictor, Depends(get_predictor)]


def hot_state(request: Request) -> tuple[Service, Predictor]:
    """`get_service` and `get_predictor` without FastAPI's dependency solving, whose cost per
    request (bench/serve_load.py, py-spy) was a third of the bid itself: the per-impression
    endpoints call this instead. The predictor is read once, as in `get_predictor`."""
    state = request.app.state
    holder: ModelHolder = state.holder
    current = holder.current
    if current is None:
        raise NotReady(holder.not_ready_reason)
    return state.service, current


def with_profiles(
    impressions: Sequence[Impression], store: InMemoryStore | ResilientStore
) -> list[dict[str, Any]]:
    """Each impression's request fields; those with a user_id get a copy filled from the profile
    store (the others are passed as they are: no copy per impression)."""
    requests = []
    for imp in impressions:
        req = imp.__dict__
        if req.get("user_id"):
            req = dict(req)
            fill_from_profile(req, store)
        requests.append(req)
    return requests


def json_response(content: Any, status_code: int = 200) -> Response:
    return Response(orjson.dumps(content), status_code=status_code, media_type="application/json")


@hot_router.post(
    "/v1/predict",
    response_model=PredictResponse,
    responses=responses_for(PayloadTooLarge, NotReady),
    summary="pCTR and pCVR for 1..N impressions",
    tags=["scoring"],
)
async def predict(body: PredictRequest, request: Request) -> Response:
    service, predictor = hot_state(request)
    settings, metrics = service.settings, service.metrics
    n = len(body.impressions)
    if n > settings.max_impressions:
        raise TooManyItems("impressions", n, settings.max_impressions)
    pctr, pcvr = predictor.predict(with_profiles(body.impressions, service.keeper.store))
    observe_ctr, observe_cvr = metrics.observe_pctr, metrics.observe_pcvr
    for a, b in zip(pctr, pcvr, strict=True):
        observe_ctr(a)
        observe_cvr(b)
    predictions = [{"pctr": a, "pcvr": b} for a, b in zip(pctr, pcvr, strict=True)]
    return json_response({"predictions": predictions, "models": predictor.versions})


@hot_router.post(
    "/v1/bid",
    response_model=BidResponse,
    responses=responses_for(PayloadTooLarge, NotReady, UnknownCampaign, NoCampaigns),
    summary="Bid price (CPM), campaign and creative per impression, or a no-bid with its reason",
    description="Candidates: inline `campaigns`; or `campaign_ids` from the campaigns file; or "
    "neither, and every campaign of the file is a candidate. File campaigns bring targeting, "
    "frequency caps (from the profile store, by `user_id`), creatives, rules, exploration, "
    "their strategy, pacing and daily budget.",
    tags=["scoring"],
)
async def bid(body: BidRequest, request: Request) -> Response:
    service, predictor = hot_state(request)
    settings, metrics = service.settings, service.metrics
    n = len(body.impressions)
    if n > settings.max_impressions:
        raise TooManyItems("impressions", n, settings.max_impressions)
    winrate = service.winrate(predictor)
    if body.campaigns is not None:
        if len(body.campaigns) > settings.max_campaigns:
            raise TooManyItems("campaigns", len(body.campaigns), settings.max_campaigns)
        requests = with_profiles(body.impressions, service.keeper.store)
        results = [
            r
            for r, _ in bidder.decide_requests(
                predictor, requests, bidder.plan(body.campaigns), winrate=winrate, inline=True
            )
        ]
    else:
        results = file_campaign_bids(service, predictor, body, winrate)
    for r in results:
        metrics.count_bid("bid" if r["bid"] else r["reason"])
        if r["pctr"] is not None:
            metrics.observe_pctr(r["pctr"])
            metrics.observe_pcvr(r["pcvr"])
    return json_response({"bids": results, "models": predictor.versions})


def file_campaign_bids(
    service: Service, predictor: Predictor, body: BidRequest, winrate: WinRateModel | None
) -> list[dict[str, Any]]:
    campaigns = service.book.campaigns
    if not campaigns:
        raise NoCampaigns()
    if body.campaign_ids is None:
        chosen = list(campaigns.values())
    else:
        chosen = []
        for cid in body.campaign_ids:
            c = campaigns.get(cid)
            if c is None:
                raise UnknownCampaign(cid, "campaign_ids")
            chosen.append(c)
    store = service.keeper.store
    requests, caps = [], []
    for imp in body.impressions:
        req = dict(imp.__dict__)
        caps.append(fill_from_profile(req, store))
        requests.append(req)
    decided = bidder.decide_requests(
        predictor,
        requests,
        chosen,
        states=service.keeper.states,
        campaign_imps=caps,
        winrate=winrate,
        rng=service.rng,
    )
    return [r for r, _ in decided]


@router.post(
    "/v1/events",
    response_model=EventsResult,
    responses=responses_for(PayloadTooLarge, UnknownCampaign),
    summary="Win notices (paying price), clicks and conversions; a repeated event_id counts once",
    description="The whole batch is checked first: an event for a campaign that is not in the "
    "campaigns file is a 404 and nothing is applied.",
    tags=["state"],
)
async def events(body: EventsRequest, service: ServiceDep) -> Response:
    return json_response(await record_events(service, body))


async def record_events(service: Service, body: EventsRequest) -> dict[str, int]:
    campaigns = service.book.campaigns
    check_campaigns(body.events, campaigns)
    keeper = service.keeper
    outcome = await asyncio.to_thread(apply_events, body.events, campaigns, keeper.store)
    if outcome["touched"]:
        await asyncio.to_thread(keeper.refresh, outcome["touched"])
    for kind, count in outcome["by_type"].items():
        service.metrics.events.labels(kind, "accepted").inc(count)
    if outcome["duplicates"]:
        service.metrics.events.labels("any", "duplicate").inc(outcome["duplicates"])
    service.sync_state_metrics()
    return {"accepted": outcome["accepted"], "duplicates": outcome["duplicates"]}


@router.get(
    "/v1/campaigns",
    response_model=CampaignsStatus,
    summary="Loaded campaigns with today's spend, budget left and pacing multiplier; the state "
    "backend and the last campaigns-file error",
    tags=["state"],
)
async def campaigns_status(service: ServiceDep) -> Response:
    keeper = service.keeper
    return json_response(
        {
            **service.book.status(),
            "backend": keeper.backend,
            "degraded": keeper.degraded,
            "campaigns": keeper.status(),
        }
    )


@router.get("/healthz", response_model=Health, summary="The process is up", tags=["ops"])
async def healthz() -> Response:
    return json_response({"status": "ok"})


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "Models not loaded yet, and why"}},
    summary="Both models are loaded and smoke-tested",
    tags=["ops"],
)
async def readyz(service: ServiceDep) -> Response:
    holder = service.holder
    if holder.current is None:
        return json_response({"ready": False, "reason": holder.not_ready_reason}, 503)
    return json_response({"ready": True, "reason": None})


@router.get(
    "/v1/models",
    response_model=ModelsStatus,
    summary="Served versions, run ids, load times, refused versions and the last reload error",
    tags=["ops"],
)
async def models(service: ServiceDep) -> Response:
    return json_response(service.holder.status())


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    summary="Prometheus metrics (aggregated across workers)",
    tags=["ops"],
)
async def metrics_endpoint(service: ServiceDep) -> Response:
    return Response(service.metrics.render(), media_type=CONTENT_TYPE)


@router.post(
    "/admin/reload",
    response_model=ReloadResult,
    responses=responses_for(Unauthorized, AdminDisabled, PayloadTooLarge),
    summary="Re-read the aliases now, in every worker (header X-API-Key)",
    tags=["ops"],
)
async def admin_reload(
    service: ServiceDep,
    x_api_key: Annotated[str | None, Header(description="The BIDOPT_API_KEY value")] = None,
) -> Response:
    key = service.settings.api_key
    if key is None:
        raise AdminDisabled()
    expected = key.get_secret_value().encode()
    if x_api_key is None or not hmac.compare_digest(x_api_key.encode(), expected):
        raise Unauthorized()
    outcome = await service.holder.request_reload()
    outcome.pop("reachable", None)
    outcome["campaigns_reloaded"] = service.poll_campaigns()
    await asyncio.to_thread(service.keeper.refresh)
    return json_response(outcome)
