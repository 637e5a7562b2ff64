"""The service's RLB tables: each rlb campaign's market-price file read, its table solved when
the campaigns file is loaded, and kept while its inputs do not change.

Why at load: a table takes up to seconds to solve (T = 1,000 auctions, a 2,048-point budget
grid) and a bid from it microseconds, so it is solved before the campaign is installed: at
start before the service listens, on a hot reload in the state loop's worker thread while the
previous campaigns keep bidding. No installed rlb campaign is ever without its table; a
campaign built without one (`bidding.campaigns.load_campaigns` alone) does not bid
(`rlb_not_ready`).

Several tables to solve are solved side by side, one thread each up to the cores (the
kernel runs without the GIL).

Cached per (campaign, daily budget, auctions per day, horizon, grid, mean value, market-price
model): a reload that leaves them alone (another campaign edited, a creative added) reuses the
table; a new budget or a new histogram solves again. The cache keeps what the current file
uses, nothing more.

The market file is JSON (no pickle; format in `bidding.rlb_campaign.market_from_json`), named
by the campaign relative to the campaigns file, its prices in the campaign's currency.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bidding.campaigns import Campaign, CampaignError
from bidding.rlb import MarketModel, Rlb
from bidding.rlb_campaign import RlbBidder, market_from_json, solve_campaign

log = logging.getLogger("bidopt.campaigns")

TableKey = tuple[str, float, int, int, int, float, float, str]


def market_path(campaigns_file: Path, campaign: Campaign) -> Path:
    assert campaign.rlb is not None
    p = Path(campaign.rlb.market)
    return p if p.is_absolute() else campaigns_file.parent / p


def read_market(path: Path, rate: float = 1.0) -> MarketModel:
    """One market-price file; ValueError naming the file and the field."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: cannot read ({getattr(e, 'strerror', None) or e})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not JSON ({e.msg}, line {e.lineno})") from None
    try:
        return market_from_json(data, rate=rate)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None


def read_markets(campaigns: Mapping[str, Campaign], campaigns_file: Path) -> dict[str, MarketModel]:
    """Every rlb campaign's market-price model; CampaignError listing each bad file, one line
    per campaign: "<campaigns file>: campaign '<id>': rlb.market: <file>: <reason>"."""
    out, errors = {}, []
    for cid, c in campaigns.items():
        if c.rlb is None:
            continue
        rate = c.fx.rate if c.fx is not None else 1.0
        try:
            out[cid] = read_market(market_path(campaigns_file, c), rate)
        except ValueError as e:
            errors.append(f"{campaigns_file}: campaign {cid!r}: rlb.market: {e}")
    if errors:
        raise CampaignError(errors)
    return out


def _key(c: Campaign, market: MarketModel) -> TableKey:
    cfg = c.rlb
    assert cfg is not None
    digest = hashlib.blake2b(market.pdf.tobytes(), digest_size=16).hexdigest()
    theta = cfg.mean_value(c.goal_value)
    return (
        c.id, c.daily_budget, cfg.auctions_per_day, cfg.table_horizon(), cfg.grid, theta,
        market.step, digest,
    )  # fmt: skip


class RlbTables:
    """The solved tables of the campaigns in force, and how the last load went (`status`)."""

    def __init__(self) -> None:
        self._cache: dict[TableKey, Rlb] = {}
        self.last: dict[str, dict[str, Any]] = {}

    def attach(
        self, campaigns: Mapping[str, Campaign], markets: Mapping[str, MarketModel], source: str
    ) -> None:
        """Solve (or reuse) each rlb campaign's table and attach its bidder; CampaignError
        naming the campaign when a table cannot be solved."""
        keys = {cid: _key(c, markets[cid]) for cid, c in campaigns.items() if c.rlb is not None}
        todo = [cid for cid, key in keys.items() if key not in self._cache]
        solved, errors = _solve_all({cid: campaigns[cid] for cid in todo}, markets, source)
        if errors:
            raise CampaignError(errors)
        used: dict[TableKey, Rlb] = {}
        last: dict[str, dict[str, Any]] = {}
        for cid, key in keys.items():
            c = campaigns[cid]
            assert c.rlb is not None
            table, seconds = solved[cid] if cid in solved else (self._cache[key], 0.0)
            used[key] = table
            c.attach_rlb(RlbBidder(table, c.daily_budget, c.rlb.auctions_per_day, c.tz))
            last[cid] = {
                "horizon": table.table.horizon,
                "grid": int(table.table.values.shape[1]),
                "mean_value": key[5],
                "reused": cid not in solved,
                "solve_s": round(seconds, 3),
            }
        self._cache = used
        self.last = last


def _solve_all(
    campaigns: Mapping[str, Campaign], markets: Mapping[str, MarketModel], source: str
) -> tuple[dict[str, tuple[Rlb, float]], list[str]]:
    """(table, seconds) per campaign, one thread each up to the cores (the numba kernel
    releases the GIL, so several campaigns solve side by side), and the failures."""
    if not campaigns:
        return {}, []
    workers = min(len(campaigns), os.cpu_count() or 1)
    with ThreadPoolExecutor(workers, thread_name_prefix="bidopt-rlb") as pool:
        futures = {cid: pool.submit(_solve_one, c, markets[cid]) for cid, c in campaigns.items()}
    solved, errors = {}, []
    for cid, future in futures.items():
        try:
            solved[cid] = future.result()
        except ValueError as e:
            errors.append(f"{source}: campaign {cid!r}: rlb: cannot solve the table: {e}")
            continue
        log.info("rlb table for %s solved in %.2f s", cid, solved[cid][1])
    return solved, errors


def _solve_one(c: Campaign, market: MarketModel) -> tuple[Rlb, float]:
    assert c.rlb is not None
    t0 = time.perf_counter()
    table = solve_campaign(c.rlb, c.goal_value, c.daily_budget, market)
    return table, time.perf_counter() - t0
