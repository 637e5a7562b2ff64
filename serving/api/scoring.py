"""POST /v1/predict and POST /v1/bid: the per-impression endpoints, on the fast lane.

Currencies on /v1/bid: an impression may name its `currency` (default the account's). Its floor
is converted into the account currency for the decision at the rate of its event_time's date
(UTC, `bidding.fx`), and its price and expected value back into its currency; every result
says its currency. An impression whose currency has no rate is a no-bid with the reason
(`currency_not_supported`, `fx_rate_unavailable`) and is not scored. Impressions in the
account currency take the path they took before currencies (no copy, no lookup).

Handlers are `async def` so that scoring runs on the event loop thread: no thread-pool hop per
request, and the FastPredictor buffers are never shared between threads. Bodies are written with
orjson into a plain Response; the declared `response_model`s document them in OpenAPI and are
what the schemathesis test holds the responses to.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from fastapi import APIRouter, Request
from starlette.responses import Response

from bidding.fx import FxTable, FxUnavailable, Pricing, pricing
from bidding.winrate import WinRateModel
from serving import bidder
from serving.api.schemas import (
    BidImpression,
    PredictRequest,
    PredictResponse,
    V1BidRequest,
    V1BidResponse,
)
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
    winrate = service.winrate(predictor)
    if body.campaigns is not None and len(body.campaigns) > settings.max_campaigns:
        raise TooManyItems("campaigns", len(body.campaigns), settings.max_campaigns)
    account = settings.account_currency
    if not service.ledger.available:  # no money is spent that the ledger cannot account for
        results = [_refused(imp, LEDGER_UNAVAILABLE) for imp in body.impressions]
        return json_response({"bids": results, "models": predictor.versions})
    decided: list[tuple[dict[str, Any], dict[str, Any]]] = []  # (request, result) to log
    if all(imp.currency is None or imp.currency == account for imp in body.impressions):
        results = _decide(service, predictor, body, body.impressions, winrate, decided)
        for r in results:
            r["currency"] = account
    else:
        results = _converted_bids(service, predictor, body, winrate, account, decided)
    service.log_decisions("v1", decided, predictor.versions)
    for r in results:
        metrics.count_bid("bid" if r["bid"] else r["reason"])
        if r["pctr"] is not None:
            metrics.observe_pctr(r["pctr"])
            metrics.observe_pcvr(r["pcvr"])
    return json_response({"bids": results, "models": predictor.versions})


def _decide(
    service: Service,
    predictor: Predictor,
    body: V1BidRequest,
    impressions: Sequence[BidImpression],
    winrate: WinRateModel | None,
    decided: list[tuple[dict[str, Any], dict[str, Any]]],
) -> list[dict[str, Any]]:
    """The result per impression against the inline or the file campaigns; each (request,
    result) also goes to `decided`, for the ledger once the answer is final."""
    if body.campaigns is None:
        requests, results = file_campaign_bids(service, predictor, body, winrate, impressions)
    else:
        requests = with_profiles(impressions, service.keeper.store)
        plans = bidder.plan(body.campaigns)
        made = bidder.decide_requests(predictor, requests, plans, winrate=winrate, inline=True)
        results = [r for r, _ in made]
    decided.extend(zip(requests, results, strict=True))
    return results


def _refused(imp: BidImpression, reason: str) -> dict[str, Any]:
    return {
        "impression_id": imp.impression_id,
        "bid": False,
        "price": None,
        "currency": imp.currency,
        "campaign_id": None,
        "creative_id": None,
        "pctr": None,
        "pcvr": None,
        "expected_value": None,
        "reason": reason,
        "rule": None,
        "propensity": None,
    }


def _converted_bids(
    service: Service,
    predictor: Predictor,
    body: V1BidRequest,
    winrate: WinRateModel | None,
    account: str,
    decided: list[tuple[dict[str, Any], dict[str, Any]]],
) -> list[dict[str, Any]]:
    """Some impressions are in another currency: floors in, prices back, at each impression's
    date; those without a rate answered as no-bids in their place."""
    fx: FxTable | None = service.fx.table
    results: list[dict[str, Any] | None] = []
    todo: list[tuple[int, BidImpression, Pricing, float]] = []  # position, imp, money, floor
    known: dict[tuple[str, int], Pricing] = {}  # one lookup per (currency, date) per request
    for imp in body.impressions:
        currency = imp.currency or account
        key = (currency, imp.event_time.toordinal())
        try:
            money = known.get(key)
            if money is None:
                money = known[key] = pricing((currency,), account, fx, key[1])
            floor = money.floor(imp.floor_price, currency)
        except FxUnavailable as exc:
            results.append(_refused(imp, exc.reason))
            continue
        todo.append((len(results), imp, money, imp.floor_price))
        # The impression is this request's own: it takes the account-currency floor in place
        # (copying it would cost more than the conversion); its own floor is kept in `todo`.
        imp.__dict__["floor_price"] = floor
        results.append(None)
    impressions = [imp for _, imp, _, _ in todo]  # none left: still checks campaign_ids
    made = _decide(service, predictor, body, impressions, winrate, decided)
    for (i, _, money, own_floor), r in zip(todo, made, strict=True):
        r["currency"] = money.currency
        if r["price"] is not None:
            r["price"] = money.bid(r["price"], own_floor, money.currency)
        if r["expected_value"] is not None:
            r["expected_value"] *= money.to_bid
        results[i] = r
    return [r for r in results if r is not None]


def file_campaign_bids(
    service: Service,
    predictor: Predictor,
    body: V1BidRequest,
    winrate: WinRateModel | None,
    impressions: Sequence[BidImpression],
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
    for imp in impressions:
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
