"""One /v1/bid request: every impression x eligible campaign x creative, scored, then priced.

The prices come from `bidding/` (value per goal from `bidding.goals`, constraints from
`bidding.strategies.bid_one`, creative choice from `bidding.creatives.choose`), the same
functions the replay simulator calls, so the service and replay agree on a price. Candidates are
encoded by patching the campaign/creative/advertiser slots of the impression's encoded row
rather than encoding the request again, and are scored together (the matrix path once there are
enough of them).

Until first-price shading is wired in from the bidding issue, both auction types bid the value
(capped by the campaign's max bid): truthful for second price, an over-bid for first price.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from bidding.creatives import choose
from bidding.goals import GoalValue, goal_value
from bidding.strategies import BidStrategy, Value, bid_one
from serving.predictor import Predictor
from serving.schemas import BidImpression, Campaign

NOT_ELIGIBLE: Final = "not_eligible"
VALUE_BIDDING: Final[BidStrategy] = Value()


@dataclass(frozen=True, slots=True)
class CampaignPlan:
    """A campaign prepared once per request: its goal folded into one multiplier."""

    campaign: Campaign
    goal: GoalValue
    channels: frozenset[str] | None


def plan(campaigns: Sequence[Campaign]) -> list[CampaignPlan]:
    return [
        CampaignPlan(
            campaign=c,
            goal=goal_value(c.goal, c.target, c.value_per_conversion),
            channels=frozenset(c.channels) if c.channels is not None else None,
        )
        for c in campaigns
    ]


def no_bid(impression_id: str, reason: str, **scored: Any) -> dict[str, Any]:
    out = {
        "impression_id": impression_id,
        "bid": False,
        "price": None,
        "campaign_id": None,
        "creative_id": None,
        "pctr": None,
        "pcvr": None,
        "expected_value": None,
        "reason": reason,
    }
    out.update(scored)
    return out


def decide(
    predictor: Predictor, impressions: Sequence[BidImpression], plans: Sequence[CampaignPlan]
) -> list[dict[str, Any]]:
    """One result per impression, in order: the best-priced campaign and creative, or a no-bid
    with the reason of the best candidate (not_eligible when no campaign may bid on it)."""
    ctr_rows: list[list[float]] = []
    cvr_rows: list[list[float]] = []
    # per impression: list of (plan index, first candidate row, number of creatives)
    groups: list[list[tuple[int, int]]] = []
    ctr_model, cvr_model, shared = predictor.ctr, predictor.cvr, predictor.shared_encoding
    for imp in impressions:
        base_ctr, base_cvr = predictor.encode(imp.__dict__)
        group: list[tuple[int, int]] = []
        for j, p in enumerate(plans):
            if p.channels is not None and imp.channel not in p.channels:
                continue
            group.append((j, len(ctr_rows)))
            camp = p.campaign
            adv = camp.advertiser_id if camp.advertiser_id is not None else imp.advertiser_id
            for creative in camp.creative_ids:
                patch = {
                    "campaign_id": camp.campaign_id,
                    "creative_id": creative,
                    "advertiser_id": adv,
                }
                row = ctr_model.patch(base_ctr, patch)
                ctr_rows.append(row)
                cvr_rows.append(row if shared else cvr_model.patch(base_cvr, patch))
        groups.append(group)

    pctr, pcvr = predictor.score_rows(ctr_rows, cvr_rows)

    results: list[dict[str, Any]] = []
    for imp, group in zip(impressions, groups, strict=True):
        best: dict[str, Any] | None = None
        best_nobid: dict[str, Any] | None = None
        for j, start in group:
            p = plans[j]
            creatives = p.campaign.creative_ids
            values = [p.goal.value(pctr[start + k], pcvr[start + k]) for k in range(len(creatives))]
            k = choose(values).index
            price, reason = bid_one(
                VALUE_BIDDING,
                values[k],
                floor=imp.floor_price,
                max_bid=p.campaign.max_bid,
            )
            scored = {
                "campaign_id": p.campaign.campaign_id,
                "creative_id": creatives[k],
                "pctr": pctr[start + k],
                "pcvr": pcvr[start + k],
                "expected_value": values[k],
            }
            if not reason:
                if best is None or price > best["price"]:
                    best = {"price": price, **scored}
            elif best_nobid is None or values[k] > best_nobid["expected_value"]:
                best_nobid = {"reason": reason, **scored}
        if best is not None:
            results.append(
                {"impression_id": imp.impression_id, "bid": True, "reason": None, **best}
            )
        elif best_nobid is not None:
            reason = best_nobid.pop("reason")
            results.append(no_bid(imp.impression_id, reason, **best_nobid))
        else:
            results.append(no_bid(imp.impression_id, NOT_ELIGIBLE))
    return results
