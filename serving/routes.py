"""The HTTP endpoints: thin handlers over Predictor, bidder and ModelHolder.

Handlers are `async def` (as are their dependencies) so that scoring runs on the event loop
thread: no thread-pool hop per request, and the FastPredictor buffers are never shared between
threads. Bodies are written with orjson into a plain Response; the declared `response_model`s
document them in OpenAPI and are what the schemathesis test holds the responses to.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import PlainTextResponse
from starlette.responses import Response

from serving import bidder
from serving.errors import (
    AdminDisabled,
    NotReady,
    PayloadTooLarge,
    TooManyItems,
    Unauthorized,
    responses_for,
)
from serving.metrics import CONTENT_TYPE, Metrics
from serving.predictor import Predictor
from serving.reload import ModelHolder
from serving.schemas import (
    BidRequest,
    BidResponse,
    Health,
    ModelsStatus,
    PredictRequest,
    PredictResponse,
    Readiness,
    ReloadResult,
)
from serving.settings import BidoptSettings

router = APIRouter()


@dataclass(frozen=True, slots=True)
class Service:
    """What handlers need besides the models, as one dependency (each dependency FastAPI
    resolves costs microseconds per request on the hot path)."""

    settings: BidoptSettings
    holder: ModelHolder
    metrics: Metrics


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


def json_response(content: Any, status_code: int = 200) -> Response:
    return Response(orjson.dumps(content), status_code=status_code, media_type="application/json")


@router.post(
    "/v1/predict",
    response_model=PredictResponse,
    responses=responses_for(PayloadTooLarge, NotReady),
    summary="pCTR and pCVR for 1..N impressions",
    tags=["scoring"],
)
async def predict(body: PredictRequest, predictor: PredictorDep, service: ServiceDep) -> Response:
    settings, metrics = service.settings, service.metrics
    n = len(body.impressions)
    if n > settings.max_impressions:
        raise TooManyItems("impressions", n, settings.max_impressions)
    pctr, pcvr = predictor.predict([imp.__dict__ for imp in body.impressions])
    observe_ctr, observe_cvr = metrics.pctr.observe, metrics.pcvr.observe
    for a, b in zip(pctr, pcvr, strict=True):
        observe_ctr(a)
        observe_cvr(b)
    predictions = [{"pctr": a, "pcvr": b} for a, b in zip(pctr, pcvr, strict=True)]
    return json_response({"predictions": predictions, "models": predictor.versions})


@router.post(
    "/v1/bid",
    response_model=BidResponse,
    responses=responses_for(PayloadTooLarge, NotReady),
    summary="Bid price (CPM), campaign and creative per impression, or a no-bid with its reason",
    tags=["scoring"],
)
async def bid(body: BidRequest, predictor: PredictorDep, service: ServiceDep) -> Response:
    settings, metrics = service.settings, service.metrics
    n = len(body.impressions)
    if n > settings.max_impressions:
        raise TooManyItems("impressions", n, settings.max_impressions)
    if len(body.campaigns) > settings.max_campaigns:
        raise TooManyItems("campaigns", len(body.campaigns), settings.max_campaigns)
    results = bidder.decide(predictor, body.impressions, bidder.plan(body.campaigns))
    for r in results:
        metrics.count_bid("bid" if r["bid"] else r["reason"])
        if r["pctr"] is not None:
            metrics.pctr.observe(r["pctr"])
            metrics.pcvr.observe(r["pcvr"])
    return json_response({"bids": results, "models": predictor.versions})


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
    return json_response(outcome)
