"""Budgets and pacing in the service: the state stores read into `CampaignState`s for bidding.

`bidding.selection` takes a `CampaignState(multiplier, budget_left, curve)` per campaign. Reading
the store per bid would put a Redis round trip per campaign on the hot path, so `BudgetKeeper`
keeps a snapshot, refreshed every `state_refresh_s` from the store (so spend recorded by other
workers or replicas shows within that interval) and updated at once for events this worker
applies. Every `pacing_interval_s` it also steps the PID controller (`bidding.pacing.step`) per
campaign on the store's spend for the campaign's local day and stores the multiplier
(`put_pacing`), so all workers bid with the same one.

Days are the campaign's local days (its timezone); spend is kept per (campaign, local date) and,
for total budgets, under the key "total". Budgets use the service's clock, not the request's
event_time, so a request cannot move itself into another day's budget.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict
from datetime import datetime
from typing import Any, Final

from bidding.campaign_fx import Converted
from bidding.campaigns import Campaign
from bidding.pacing import PacingState, PidGains, even_plan, local_day, new_state, step
from bidding.selection import CampaignState
from serving.state.campaigns import CampaignBook
from serving.state.store import TOTAL, ResilientStore, Store

log = logging.getLogger("bidopt.pacing")

PLAN: Final = even_plan()
# Pacing only throttles in the service: a campaign behind plan goes back up to its strategy's own
# price, never above it. Bidding over the value to catch up buys impressions at a loss, and a
# service started mid-day (no spend yet, plan already at 30%) would otherwise open at max bid.
GAINS: Final = PidGains(max_multiplier=1.0)


def day_key(campaign: Campaign, epoch_s: float) -> str:
    """The campaign-local date of a moment, as the store's day key (YYYY-MM-DD)."""
    return datetime.fromtimestamp(epoch_s, campaign.tz).date().isoformat()


class BudgetKeeper:
    def __init__(
        self, store: Store, book: CampaignBook, pacing_interval_s: float, workers: int = 1
    ) -> None:
        self.store = store
        self.workers = workers
        self.book = book
        self.pacing_interval_s = pacing_interval_s
        self.states: dict[str, CampaignState] = {}
        self.spent: dict[str, tuple[float, float]] = {}  # id -> (today, total)
        self.last_pacing_at = 0.0
        self.last_refresh_error: str | None = None

    @property
    def degraded(self) -> bool:
        return self.store.degraded

    @property
    def backend(self) -> str:
        return self.store.backend

    # -- reads (blocking: the app runs them in a worker thread) ---------------------------------

    def _multiplier(self, c: Campaign, now: float) -> float:
        saved = self.store.get_pacing(c.id)
        if not saved:
            return 1.0
        start, _ = local_day(now, c.tz)
        if saved.get("start") != start or saved.get("budget") != c.daily_budget:
            return 1.0  # a new day (or a new budget) starts unpaced
        m = saved.get("multiplier", 1.0)
        return float(m) if isinstance(m, int | float) and math.isfinite(m) and m > 0 else 1.0

    def refresh(self, ids: Iterable[str] | None = None, now: float | None = None) -> None:
        """Re-read spend and multipliers for `ids` (default: every loaded campaign)."""
        now = time.time() if now is None else now
        campaigns = self.book.campaigns
        wanted = list(campaigns) if ids is None else [i for i in ids if i in campaigns]
        for cid in wanted:
            c = campaigns[cid]
            today = self.store.spend(cid, day_key(c, now))
            total = self.store.spend(cid, TOTAL) if c.total_budget is not None else 0.0
            left = c.daily_budget - today
            if c.total_budget is not None:
                left = min(left, c.total_budget - total)
            if self.store.degraded and isinstance(self.store, ResilientStore):
                left = min(left, self._share_left(c, now))
            self.spent[cid] = (today, total)
            self.states[cid] = CampaignState(self._multiplier(c, now), left)
        for gone in set(self.states) - set(campaigns):
            self.states.pop(gone, None)
            self.spent.pop(gone, None)

    def _share_left(self, c: Campaign, now: float) -> float:
        """While Redis is down: this worker's slice of what was left when it last saw the shared
        spend, less what it has spent since (every worker gets the same slice)."""
        store = self.store
        assert isinstance(store, ResilientStore)
        seen, since = store.spend_split(c.id, day_key(c, now))
        left = (c.daily_budget - seen) / self.workers - since
        if c.total_budget is not None:
            seen_t, since_t = store.spend_split(c.id, TOTAL)
            left = min(left, (c.total_budget - seen_t) / self.workers - since_t)
        return left

    def pace(self, now: float | None = None) -> None:
        """One controller step per campaign; the new state goes to the store."""
        now = time.time() if now is None else now
        for cid, c in self.book.campaigns.items():
            start, length = local_day(now, c.tz)
            spent = self.store.spend(cid, day_key(c, now))
            saved = self.store.get_pacing(cid)
            state = _state_from(saved, start, c.daily_budget) or new_state(
                c.daily_budget, start, length
            )
            # Several workers share the state in Redis: skip if another one has just stepped.
            if not math.isnan(state.last_update) and now - state.last_update < (
                0.5 * self.pacing_interval_s
            ):
                continue
            stepped = step(state, now, spent, PLAN, GAINS)
            self.store.put_pacing(cid, asdict(stepped))
        self.last_pacing_at = now

    def tick(self, now: float | None = None) -> None:
        """What the state loop does each interval: pace when due, then refresh the snapshot."""
        now = time.time() if now is None else now
        if now - self.last_pacing_at >= self.pacing_interval_s:
            self.pace(now)
        self.refresh(now=now)

    def status(self, now: float | None = None) -> list[dict[str, Any]]:
        now = time.time() if now is None else now
        out = []
        for cid, c in self.book.campaigns.items():
            state = self.states.get(cid)
            today, total = self.spent.get(cid, (0.0, 0.0))
            out.append(
                {
                    "id": cid,
                    "advertiser": c.advertiser,
                    "goal": c.goal,
                    "strategy": c.strategy,
                    "currency": c.fx.currency if c.fx is not None else self.book.account_currency,
                    "fx": _money(c.fx),
                    "target": c.target,
                    "max_bid": c.max_bid,
                    "daily_budget": c.daily_budget,
                    "total_budget": c.total_budget,
                    "timezone": c.timezone,
                    "day": day_key(c, now),
                    "spend_today": today,
                    "spend_total": total if c.total_budget is not None else None,
                    "budget_left": state.budget_left if state is not None else c.daily_budget,
                    "pacing_multiplier": state.multiplier if state is not None else 1.0,
                    "creatives": list(c.creative_ids),
                }
            )
        return out


def _money(fx: Converted | None) -> dict[str, Any] | None:
    if fx is None:
        return None
    return {
        "currency": fx.currency,
        "rate": fx.rate,
        "rate_date": fx.rate_date.isoformat(),
        "original": dict(fx.original),
    }


def _state_from(saved: Mapping[str, Any] | None, start: float, budget: float) -> PacingState | None:
    """The stored controller state if it is today's, for this budget; else None (start afresh)."""
    if not saved or saved.get("start") != start or saved.get("budget") != budget:
        return None
    try:
        return PacingState(**{k: float(v) for k, v in saved.items()})
    except (TypeError, ValueError):
        log.warning("ignoring a malformed pacing state: %r", saved)
        return None
