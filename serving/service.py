"""What every handler needs besides the request: the `Service` (settings, models, metrics,
campaigns, state), how a handler reaches it, and the background loop that keeps its state fresh.

Handlers read it from `request.app.state` themselves (`service_of`, `scoring_pair`) instead of
through FastAPI dependencies: each dependency FastAPI resolves cost microseconds per request,
and on the fast lane there is no dependency solving at all.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from bidding.winrate import WinRateModel
from serving.api.schemas import Impression
from serving.errors import NotReady
from serving.metrics import HandlingTimes, Metrics
from serving.models.holder import ModelHolder
from serving.models.predictor import Predictor
from serving.settings import BidoptSettings
from serving.state.budgets import BudgetKeeper
from serving.state.campaigns import CampaignBook
from serving.state.fx import FxBook
from serving.state.ledger import Ledger
from serving.state.performance import Performance
from serving.state.profiles import fill_from_profile
from serving.state.store import Store

log = logging.getLogger("bidopt.serving")


@dataclass(frozen=True, slots=True)
class Service:
    settings: BidoptSettings
    holder: ModelHolder
    metrics: Metrics
    book: CampaignBook
    keeper: BudgetKeeper
    ledger: Ledger
    fx: FxBook = field(default_factory=lambda: FxBook(None))
    winrate_override: WinRateModel | None = None
    win_secret: bytes = b""
    rng: random.Random = field(default_factory=random.Random)
    rtb_times: HandlingTimes = field(default_factory=HandlingTimes)
    performance: Performance = field(default_factory=Performance)

    def winrate(self, predictor: Predictor) -> WinRateModel | None:
        """BIDOPT_WINRATE_FILE if set, else the CTR bundle's winrate.json, else none."""
        return self.winrate_override or predictor.ctr.winrate

    def sync_state_metrics(self) -> None:
        self.metrics.state_degraded.set(1 if self.keeper.degraded else 0)
        self.metrics.campaigns_loaded.set(len(self.book.campaigns))
        self.metrics.ledger_available.set(1 if self.ledger.available else 0)
        now = time.time()
        for cid, c in self.book.campaigns.items():
            self.metrics.set_performance(cid, self.performance.status(cid, now, c.target, c.goal))

    def campaigns_status(self) -> list[dict[str, Any]]:
        """/v1/campaigns' list: budgets and pacing (keeper) with real performance (ledger)."""
        now = time.time()
        campaigns = self.book.campaigns
        out = self.keeper.status(now)
        for entry in out:
            c = campaigns[entry["id"]]
            entry["performance"] = self.performance.status(c.id, now, c.target, c.goal)
        return out

    def log_decisions(
        self,
        source: str,
        decided: Iterable[tuple[Mapping[str, Any], Mapping[str, Any]]],
        versions: Mapping[str, Any],
    ) -> None:
        """Every bid to the ledger; no-bids at the configured sample rate, each with that rate
        (so a training set can re-weight them by 1 / rate). `decided`: (request, result)."""
        now = time.time()
        log = self.ledger.log_decision
        rate = self.settings.nobid_sample_rate
        draw = self.rng.random
        note = self.performance.note_bid
        for req, r in decided:
            if r["bid"]:
                log(now, source, req, r, versions)
                note(r["impression_id"], r["pctr"], r["pcvr"])
            elif rate > 0.0 and (rate >= 1.0 or draw() < rate):
                log(now, source, req, r, versions, rate)

    def poll_fx(self) -> bool | None:
        changed = self.fx.poll()
        if changed is not None:
            self.metrics.fx_reloads.labels("success" if changed else "failure").inc()
        return changed

    def poll_campaigns(self) -> bool | None:
        changed = self.book.poll()
        if changed is not None:
            self.metrics.campaign_reloads.labels("success" if changed else "failure").inc()
            self.metrics.campaigns_loaded.set(len(self.book.campaigns))
        return changed


def service_of(request: Request) -> Service:
    return request.app.state.service  # type: ignore[no-any-return]


def scoring_pair(request: Request) -> tuple[Service, Predictor]:
    """The service and the model pair to score this request with, read once: a swap
    mid-request does not affect it; NotReady (503) while no pair is loaded."""
    service: Service = request.app.state.service
    current = service.holder.current
    if current is None:
        raise NotReady(service.holder.not_ready_reason)
    return service, current


def with_profiles(impressions: Sequence[Impression], store: Store) -> list[dict[str, Any]]:
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


async def state_loop(service: Service, interval: float) -> None:
    """Poll the FX and campaigns files, step pacing when due, refresh the budget snapshot;
    never dies."""
    while True:
        try:
            service.poll_fx()
            # a thread: a reload with an rlb campaign solves its table (seconds) before installing
            await asyncio.to_thread(service.poll_campaigns)
            await asyncio.to_thread(service.keeper.tick)
        except Exception:  # a store or file hiccup must not stop budgets being refreshed
            log.exception("state refresh failed; retrying in %.1f s", interval)
        service.sync_state_metrics()
        await asyncio.sleep(interval)
