"""The operator's endpoints: liveness, readiness, served models, campaigns and their state,
Prometheus metrics, and the forced reload."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse
from starlette.responses import Response

from serving.api.auth import KEY_PARAMETER, require_key
from serving.api.schemas import (
    CampaignsStatus,
    Health,
    ModelsStatus,
    Readiness,
    ReloadResult,
)
from serving.errors import AdminDisabled, Unauthorized, responses_for
from serving.metrics import CONTENT_TYPE
from serving.service import json_response, service_of

router = APIRouter()


@router.get(
    "/v1/campaigns",
    response_model=CampaignsStatus,
    summary="Loaded campaigns with today's spend, budget left and pacing multiplier; the state "
    "backend and the last campaigns-file error",
    tags=["state"],
)
async def campaigns_status(request: Request) -> Response:
    service = service_of(request)
    keeper = service.keeper
    return json_response(
        {
            **service.book.status(),
            "backend": keeper.backend,
            "degraded": keeper.degraded,
            "account_currency": service.settings.account_currency,
            "fx": service.fx.status(),
            "campaigns": service.campaigns_status(),
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
async def readyz(request: Request) -> Response:
    service = service_of(request)
    holder = service.holder
    if holder.current is None:
        return json_response({"ready": False, "reason": holder.not_ready_reason}, 503)
    if not service.ledger.available:
        reason = f"ledger_unavailable: {service.ledger.reason}"
        return json_response({"ready": False, "reason": reason}, 503)
    return json_response({"ready": True, "reason": None})


@router.get(
    "/v1/models",
    response_model=ModelsStatus,
    summary="Served versions, run ids, load times, refused versions and the last reload error",
    tags=["ops"],
)
async def models(request: Request) -> Response:
    service = service_of(request)
    return json_response(service.holder.status())


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    summary="Prometheus metrics (aggregated across workers)",
    tags=["ops"],
)
async def metrics_endpoint(request: Request) -> Response:
    service = service_of(request)
    return Response(service.metrics.render(), media_type=CONTENT_TYPE)


@router.post(
    "/admin/reload",
    response_model=ReloadResult,
    responses=responses_for(Unauthorized, AdminDisabled),
    summary="Re-read the aliases now, in every worker (header X-API-Key)",
    tags=["ops"],
    openapi_extra={"parameters": [KEY_PARAMETER]},
)
async def admin_reload(request: Request) -> Response:
    service = service_of(request)
    require_key(service.settings, request, writes="admin")
    outcome = await service.holder.request_reload()
    outcome.pop("reachable", None)
    outcome.pop("refused", None)
    outcome["fx_reloaded"] = service.poll_fx()
    # a thread, as in the state loop: a reload with an rlb campaign solves its table first
    outcome["campaigns_reloaded"] = await asyncio.to_thread(service.poll_campaigns)
    await asyncio.to_thread(service.keeper.refresh)
    return json_response(outcome)
