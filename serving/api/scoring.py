"""POST /v1/predict and POST /v1/bid: the per-impression endpoints, on the fast lane.

Handlers are `async def` so that scoring runs on the event loop thread: no thread-pool hop per
request, and the FastPredictor buffers are never shared between threads. Bodies are written with
orjson into a plain Response; the declared `response_model`s document them in OpenAPI and are
what the schemathesis test holds the responses to.
"""

from __future__ import annotations

from typing import Any, Final

from fastapi import APIRouter, Request
from starlette.responses import Response

from bidding.winrate import WinRateModel
from serving import bidder
from serving.api.schemas import PredictRequest, PredictResponse, V1BidRequest, V1BidResponse
from serving.errors import (
    BodyTimeout,
    NoCampaigns,
    NotReady,
    PayloadTooLarge,
    TooManyItems,
    UnknownCampaign,
    responses_for,
)
from serving.lane import JsonBodyRoute
from serving.models.predictor import Predictor
from serving.service import Service, json_response, scoring_pair, with_profiles
from serving.state.profiles import fill_from_profile

router = APIRouter(route_class=JsonBodyRoute)

LEDGER_UNAVAILABLE: Final = "ledger_unavailable"


@router.post(
    "/v1/predict",
    response_model=PredictResponse,
    responses=responses_for(PayloadTooLarge, BodyTimeout, NotReady),
    summary="pCTR and pCVR for 1..N impressions",
    tags=["scoring"],
)
async def predict(body: PredictRequest, request: Request) -> Response:
    service, predictor = scoring_pair(request)
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


@router.post(
    "/v1/bid",
    response_model=V1BidResponse,
    responses=responses_for(PayloadTooLarge, BodyTimeout, NotReady, UnknownCampaign, NoCampaigns),
    summary="Bid price (CPM), campaign and creative per impression, or a no-bid with its reason",
    description="Candidates: inline `campaigns`; or `campaign_ids` from the campaigns file; or "
    "neither, and every campaign of the file is a candidate. File campaigns bring targeting, "
    "frequency caps (from the profile store, by `user_id`), creatives, rules, exploration, "
    "their strategy, pacing and daily budget.",
    tags=["scoring"],
)
async def bid(body: V1BidRequest, request: Request) -> Response:
    service, predictor = scoring_pair(request)
    settings, metrics = service.settings, service.metrics
    n = len(body.impressions)
    if n > settings.max_impressions:
        raise TooManyItems("impressions", n, settings.max_impressions)
    if body.campaigns is not None and len(body.campaigns) > settings.max_campaigns:
        raise TooManyItems("campaigns", len(body.campaigns), settings.max_campaigns)
    ledger = service.ledger
    if not ledger.available:  # no money is spent that the ledger cannot account for
        results = [unaccounted(imp.impression_id) for imp in body.impressions]
        return json_response({"bids": results, "models": predictor.versions})
    winrate = service.winrate(predictor)
    if body.campaigns is not None:
        requests = with_profiles(body.impressions, service.keeper.store)
        results = [
            r
            for r, _ in bidder.decide_requests(
                predictor, requests, bidder.plan(body.campaigns), winrate=winrate, inline=True
            )
        ]
    else:
        requests, results = file_campaign_bids(service, predictor, body, winrate)
    service.log_decisions("v1", requests, results, predictor.versions)
    for r in results:
        metrics.count_bid("bid" if r["bid"] else r["reason"])
        if r["pctr"] is not None:
            metrics.observe_pctr(r["pctr"])
            metrics.observe_pcvr(r["pcvr"])
    return json_response({"bids": results, "models": predictor.versions})


def unaccounted(impression_id: str) -> dict[str, Any]:
    """The no-bid of an impression while the ledger cannot be written."""
    return {
        "impression_id": impression_id,
        "bid": False,
        "price": None,
        "campaign_id": None,
        "creative_id": None,
        "pctr": None,
        "pcvr": None,
        "expected_value": None,
        "reason": LEDGER_UNAVAILABLE,
        "rule": None,
        "propensity": None,
    }


def file_campaign_bids(
    service: Service, predictor: Predictor, body: V1BidRequest, winrate: WinRateModel | None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
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
    return requests, [r for r, _ in decided]
