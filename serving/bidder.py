"""One bid request: every impression across its candidate campaigns, scored, then decided.

There is one decision function, `bidding.selection` (targeting, frequency cap, creative fit,
rules, exploration, strategy, pacing, budget, shading), the same one replay calls. This module
only does what needs the models: it runs `prepare` per impression, scores every
(campaign, creative) pair `to_score` asks for in one batch (patching the campaign, creative and
advertiser slots of the impression's encoded row rather than encoding it again), then runs
`decide`.

Campaigns from the file are `bidding.campaigns.Campaign`s. Inline campaigns (sent with a /v1/bid
request) are adapted into the few attributes selection reads (`InlineCampaign`): value strategy,
greedy creative choice, no budget, targeting by channel only. Their no-bid for a channel they do
not target keeps the service's original reason, `not_eligible`.

State-aware campaigns (rlb) are priced by `campaign.rlb_bidder` inside `decide`, on the
campaign's budget left (`states`, the service's budgets) and the service's clock, read once per
call here.

First-price shading: when a win-rate model is loaded, a first-price impression's campaigns get
`curve = model.curve(segment_key(channel, exchange))`; without one they bid unshaded.
"""

from __future__ import annotations

import functools
import random
import time
import zoneinfo
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from bidding.goals import GoalValue, goal_value
from bidding.rules import CompiledRules
from bidding.selection import (
    DEFAULT_STATE,
    CampaignState,
    Impression,
    Slot,
    prepare,
    to_score,
)
from bidding.selection import decide as select
from bidding.strategies import BidStrategy, Value
from bidding.targeting import CHANNEL_NOT_TARGETED, CompiledTargeting
from bidding.winrate import WinRateModel, segment_key
from serving.api.schemas import Campaign as InlineSchema
from serving.models.predictor import BATCH_MIN_ROWS, Predictor

NOT_ELIGIBLE: Final = "not_eligible"
VALUE_BIDDING: Final[BidStrategy] = Value()
UTC_ZONE: Final = zoneinfo.ZoneInfo("UTC")
NO_RULES: Final = CompiledRules(())


@dataclass(frozen=True, slots=True)
class InlineCreative:
    """The creative attributes `bidding.selection` reads; an inline creative declares none."""

    id: str
    format: str | None = None
    width: int | None = None
    height: int | None = None
    duration_s: float | None = None
    channel_set: frozenset[str] | None = None
    adomain: str | None = None
    categories: tuple[str, ...] | None = None


def _targeting(channels: frozenset[str] | None) -> CompiledTargeting:
    return CompiledTargeting(
        start=None,
        end=None,
        channels=channels,
        countries=None,
        regions=None,
        device_types=None,
        os=None,
        hours=None,
        weekdays=None,
        publisher_allow=None,
        publisher_block=frozenset(),
        segments_include=None,
        segments_exclude=frozenset(),
        ip_block=(),
        cap=0,
        cap_window=0,
    )


@dataclass(frozen=True, slots=True)
class InlineCampaign:
    """A /v1/bid inline campaign seen through the attributes bidding.selection reads."""

    id: str
    advertiser: str | None
    goal_value: GoalValue
    max_bid: float
    creatives: tuple[InlineCreative, ...]
    compiled_targeting: CompiledTargeting
    tz: zoneinfo.ZoneInfo = UTC_ZONE
    bid_strategy: BidStrategy = VALUE_BIDDING
    has_rules: bool = False
    compiled_rules: CompiledRules = NO_RULES
    exploration: str = "greedy"
    epsilon: float = 0.0
    creative_ids: tuple[str, ...] = field(default=())
    rlb_bidder: None = None  # inline campaigns bid with the value strategy, never on state


def plan(campaigns: Sequence[InlineSchema]) -> list[InlineCampaign]:
    """Inline campaigns (already validated by the request schema) as selection candidates.

    A bidder sends the same few campaigns with every request, and building one cost as much as
    encoding the impression: they are immutable, so equal campaigns share one cached build."""
    return [
        _inline(
            c.campaign_id,
            c.advertiser_id,
            c.goal,
            c.target,
            c.value_per_conversion,
            c.max_bid,
            tuple(c.creative_ids),
            tuple(c.channels) if c.channels else None,
        )
        for c in campaigns
    ]


@functools.lru_cache(maxsize=4096)
def _inline(
    campaign_id: str,
    advertiser: str | None,
    goal: str,
    target: float,
    value_per_conversion: float | None,
    max_bid: float,
    creative_ids: tuple[str, ...],
    channels: tuple[str, ...] | None,
) -> InlineCampaign:
    return InlineCampaign(
        id=campaign_id,
        advertiser=advertiser,
        goal_value=goal_value(goal, target, value_per_conversion),  # type: ignore[arg-type]
        max_bid=max_bid,
        creatives=tuple(InlineCreative(i) for i in creative_ids),
        compiled_targeting=_targeting(frozenset(channels) if channels else None),
        creative_ids=creative_ids,
    )


def _nan_to_none(x: float) -> float | None:
    return None if x != x else x


def _result(impression_id: str, decision: Any, inline: bool) -> dict[str, Any]:
    w = decision.winner
    if w is not None:
        r, bid, reason = w, True, None
    else:
        bid, reason = False, decision.reason
        scored = [x for x in decision.results if x.expected_value == x.expected_value]
        r = max(scored, key=lambda x: x.expected_value) if scored else None
        if inline and reason == CHANNEL_NOT_TARGETED:
            reason = NOT_ELIGIBLE
    return {
        "impression_id": impression_id,
        "bid": bid,
        "price": w.price if w is not None else None,
        "campaign_id": r.campaign_id if r is not None and r.creative_id is not None else None,
        "creative_id": r.creative_id if r is not None else None,
        "pctr": _nan_to_none(r.pctr) if r is not None else None,
        "pcvr": _nan_to_none(r.pcvr) if r is not None else None,
        "expected_value": _nan_to_none(r.expected_value) if r is not None else None,
        "reason": reason or None,
        "rule": r.rule if r is not None else None,
        "propensity": _nan_to_none(r.propensity) if r is not None else None,
    }


def decide_requests(
    predictor: Predictor,
    requests: Sequence[Mapping[str, Any]],
    campaigns: Sequence[Any],
    *,
    states: Mapping[str, CampaignState] | None = None,
    campaign_imps: Sequence[Mapping[str, tuple[int, int]] | None] | None = None,
    slots: Sequence[Slot | None] | None = None,
    winrate: WinRateModel | None = None,
    rng: random.Random | None = None,
    inline: bool = False,
) -> list[tuple[dict[str, Any], Any]]:
    """(result dict, bidding.selection.Decision) per request, in order.

    `requests` hold the canonical REQUEST_FIELDS plus `impression_id`; `campaign_imps` is the
    user's per-campaign (24 h, 7 d) impressions (profile store) per request.
    """
    prepared = []
    total = 0
    for i, req in enumerate(requests):
        imp = Impression.from_request(req, slot=slots[i] if slots is not None else None)
        plans = prepare(campaigns, imp, campaign_imps[i] if campaign_imps is not None else None)
        keys = to_score(plans)
        total += len(keys)
        prepared.append((imp, plans, keys))
    if total >= BATCH_MIN_ROWS:  # column-wise encoding of every candidate, one matrix call
        pctr, pcvr = predictor.score_many(_candidate_requests(requests, prepared))
    else:
        pctr, pcvr = _score_few(predictor, requests, prepared)

    out = []
    k = 0
    base_states = states or {}
    now = time.time()  # state-aware bids (rlb) run on the service's clock, as budgets do
    for req, (imp, plans, keys) in zip(requests, prepared, strict=True):
        scores = {key: (pctr[k + j], pcvr[k + j]) for j, key in enumerate(keys)}
        k += len(keys)
        imp_states: Mapping[str, CampaignState] = base_states
        if winrate is not None and imp.first_price and keys:
            curve = winrate.curve(segment_key(req.get("channel"), req.get("exchange")))
            imp_states = {
                p.campaign.id: _with_curve(base_states.get(p.campaign.id, DEFAULT_STATE), curve)
                for p in plans
                if not p.reason
            }
        decision = select(plans, imp, scores, imp_states, rng=rng, now=now)
        out.append((_result(str(req.get("impression_id")), decision, inline), decision))
    return out


def _advertisers(plans: Sequence[Any]) -> dict[str, str | None]:
    return {p.campaign.id: p.campaign.advertiser for p in plans if not p.reason}


def _candidate_requests(
    requests: Sequence[Mapping[str, Any]], prepared: Sequence[Any]
) -> list[dict[str, Any]]:
    """Each request merged with each of its candidates, in `to_score` order."""
    out = []
    for req, (_, plans, keys) in zip(requests, prepared, strict=True):
        if keys:
            advertisers = _advertisers(plans)
            out += [{**req, **_candidate(req, advertisers[cid], cid, crid)} for cid, crid in keys]
    return out


def _score_few(
    predictor: Predictor, requests: Sequence[Mapping[str, Any]], prepared: Sequence[Any]
) -> tuple[list[float], list[float]]:
    """A few candidates, row by row: a request with one candidate is encoded with it; with
    several, encoded once and each candidate's slots patched into a copy."""
    ctr_model, cvr_model, shared = predictor.ctr, predictor.cvr, predictor.shared_encoding
    ctr_rows: list[list[float]] = []
    cvr_rows: list[list[float]] = []
    for req, (_, plans, keys) in zip(requests, prepared, strict=True):
        if len(keys) == 1:
            cid, crid = keys[0]
            a, b = predictor.encode({**req, **_candidate(req, _advertisers(plans)[cid], cid, crid)})
            ctr_rows.append(a)
            cvr_rows.append(b)
        elif keys:
            advertisers = _advertisers(plans)
            base_ctr, base_cvr = predictor.encode(req)
            segments = req.get("user_segments")
            for cid, crid in keys:
                patch = _candidate(req, advertisers[cid], cid, crid)
                row = ctr_model.patch(base_ctr, patch, segments)
                ctr_rows.append(row)
                cvr_rows.append(row if shared else cvr_model.patch(base_cvr, patch, segments))
    return predictor.score_rows(ctr_rows, cvr_rows) if ctr_rows else ([], [])


def _candidate(
    req: Mapping[str, Any], adv: str | None, campaign_id: str, creative_id: str
) -> dict[str, Any]:
    """The request fields a (campaign, creative) candidate sets: its ids and its advertiser
    (the request's own when the campaign names none)."""
    return {
        "campaign_id": campaign_id,
        "creative_id": creative_id,
        "advertiser_id": adv if adv is not None else req.get("advertiser_id"),
    }


def _with_curve(state: CampaignState, curve: Any) -> CampaignState:
    return CampaignState(state.multiplier, state.budget_left, curve)


def decide(
    predictor: Predictor,
    impressions: Sequence[Any],
    plans: Sequence[InlineCampaign],
    winrate: WinRateModel | None = None,
) -> list[dict[str, Any]]:
    """/v1/bid with inline campaigns: no budget, no pacing, no profile."""
    requests = [imp.__dict__ for imp in impressions]
    return [r for r, _ in decide_requests(predictor, requests, plans, winrate=winrate, inline=True)]
