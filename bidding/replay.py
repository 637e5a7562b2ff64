"""Offline auction replay: how a strategy would have done on logged auctions, in time order.

As in the iPinYou benchmark: a bid wins when it beats the logged market price (and the floor);
second price pays the market price (at least the floor), first price pays the bid; clicks and
conversions of won auctions come from the log; the budget is a fraction of the window's total
market price, and once it is spent nothing more is bid (auction.py has the exact rule: the
auction that crosses the budget is still paid, as it would be live).

Static strategies replay vectorised: bids for the whole window in one `bid_array` call (the
function serving calls, one impression at a time, through `bid_one`), settlement in one pass,
the budget cut by a cumulative sum. Pacing replays one control interval at a time
(`replay_paced`). Episode mode splits the window into episodes of N auctions, each with the
budget share of its length, as in the RL bidding literature. State-aware strategies (rlb) and
episodes by the RLB benchmark's rules replay auction by auction in bidding/episodes.py; the
simulate command's fit-and-replay grid is bidding/grid.py.

Undefined ratios are NaN, never an error: eCPC with no clicks, eCPA with no conversions, CTR
with no wins, win rate (wins / bids) with no bids. A log without clicks replays to zeros; the
caller warns.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from fractions import Fraction
from functools import cached_property

import numpy as np

from bidding.auction import budget_stop, budget_stops, settle
from bidding.goals import GoalValue
from bidding.pacing import PacingPlan, PidGains, new_state, run_paced, traffic_plan
from bidding.strategies import BidStrategy, bid_array
from bidding.winrate import POOLED, WinRateModel


@dataclass(frozen=True)
class AuctionLog:
    """Validated, time-ordered replay input (build with `make_log`)."""

    pctr: np.ndarray
    market_price: np.ndarray
    click: np.ndarray
    conversion: np.ndarray
    first_price: np.ndarray  # bool
    floor: np.ndarray
    pcvr: np.ndarray | None = None
    segment: np.ndarray | None = None  # str keys for the win-rate model (winrate.segment_key)
    time: np.ndarray | None = None  # seconds, non-decreasing
    # Known click probability per auction (synthetic logs' true_ctr): clicks in expectation,
    # free of the Bernoulli noise that makes realised clicks of small budgets jumpy.
    expected_click: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.pctr.shape[0])

    @cached_property
    def shading_groups(self) -> tuple[list[str], np.ndarray]:
        """(segment keys, per-auction index into them; -1 for second price), computed once:
        fitting calls the bid function a hundred times per strategy, and grouping string keys
        on every call cost more than the shading itself."""
        first = np.asarray(self.first_price, dtype=bool)
        seg = np.full(first.shape, POOLED) if self.segment is None else np.asarray(self.segment)
        keys, codes = np.unique(seg, return_inverse=True)
        return keys.tolist(), np.where(first, codes.reshape(-1), -1)

    def split(self, replay_fraction: float) -> tuple[AuctionLog, AuctionLog]:
        """(fit window, replay window): the replayed part is the latest `replay_fraction`."""
        if not 0 < replay_fraction < 1:
            raise ValueError(f"replay_fraction: must be in (0, 1), got {replay_fraction!r}")
        cut = round(len(self) * (1 - replay_fraction))
        return self.take(slice(0, cut)), self.take(slice(cut, len(self)))

    def take(self, sl: slice) -> AuctionLog:
        def cut(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[sl]

        return AuctionLog(
            self.pctr[sl], self.market_price[sl], self.click[sl], self.conversion[sl],
            self.first_price[sl], self.floor[sl], cut(self.pcvr), cut(self.segment),
            cut(self.time), cut(self.expected_click),
        )  # fmt: skip


def _array(name: str, x: object, n: int | None) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim == 0 and n is not None:
        a = np.full(n, a.item())
    if a.ndim != 1 or (n is not None and a.shape[0] != n):
        raise ValueError(f"{name}: expected one value per auction ({n}), got shape {a.shape}")
    return a


def _refuse(name: str, bad: np.ndarray, values: np.ndarray, why: str) -> None:
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"{name}: {int(bad.sum())} value(s) {why} (first: row {i}, {values[i]!r})")


def _probability(name: str, x: object, n: int) -> np.ndarray:
    try:
        a = _array(name, x, n).astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: not numeric ({exc})") from None
    _refuse(name, ~((a >= 0) & (a <= 1)), a, "outside [0, 1] or missing")
    return a


def _counts(name: str, x: object | None, n: int) -> np.ndarray:
    if x is None:
        return np.zeros(n)
    a = _array(name, x, n).astype(np.float64)
    _refuse(name, ~(np.isfinite(a) & (a >= 0)), a, "are not counts >= 0")
    return a


def make_log(
    *,
    pctr: object,
    market_price: object | None,
    click: object,
    pcvr: object | None = None,
    conversion: object | None = None,
    auction_type: object = "second",
    floor: object | None = None,
    segment: object | None = None,
    time: object | None = None,
    expected_click: object | None = None,
) -> AuctionLog:
    """Check and convert replay columns; every problem names the column and the first bad row.

    `auction_type`: "first"/"second" per auction or for all, or a bool array (first price).
    `time`: seconds or numpy datetime64, in time order (needed by `replay_paced` only).
    """
    if market_price is None:
        raise ValueError(
            "market_price: missing price array (replay needs each auction's market price)"
        )
    m = _array("market_price", market_price, None).astype(np.float64)
    n = m.shape[0]
    _refuse("market_price", ~(np.isfinite(m) & (m >= 0)), m, "are not prices >= 0")
    p = _probability("pctr", pctr, n)
    q = None if pcvr is None else _probability("pcvr", pcvr, n)
    at = _array("auction_type", auction_type, n)
    if at.dtype != bool:
        _refuse("auction_type", ~np.isin(at, ("first", "second")), at, "are not first/second")
        at = at == "first"
    f = np.zeros(n) if floor is None else _array("floor", floor, n).astype(np.float64)
    f = np.where(np.isnan(f), 0.0, f)  # a missing floor is no floor
    _refuse("floor", ~(np.isfinite(f) & (f >= 0)), f, "are not prices >= 0")
    seg = None if segment is None else _array("segment", segment, n).astype(str)
    t = None
    if time is not None:
        t = _array("time", time, n)
        t = t.astype("datetime64[ns]").astype(np.int64) / 1e9 if t.dtype.kind == "M" else t
        t = t.astype(np.float64)
        _refuse("time", ~np.isfinite(t), t, "are missing")
        _refuse("time", np.concatenate([[False], np.diff(t) < 0]), t, "go back in time")
    e = None if expected_click is None else _probability("expected_click", expected_click, n)
    return AuctionLog(
        p, m, _counts("click", click, n), _counts("conversion", conversion, n), at, f, q, seg, t, e
    )


def with_probabilities(log: AuctionLog, pctr: object, pcvr: object | None = None) -> AuctionLog:
    """The same auctions under other probabilities (a synthetic log's true ones): checked as
    `make_log` checks them; the other columns are shared with `log`, not copied."""
    n = len(log)
    q = None if pcvr is None else _probability("pcvr", pcvr, n)
    return replace(log, pctr=_probability("pctr", pctr, n), pcvr=q)


def parse_budget_fraction(x: str | float) -> float:
    """ "1/32", "0.25" or a number -> a fraction in (0, 1]; anything else raises, named."""
    try:
        v = float(Fraction(x.strip())) if isinstance(x, str) else float(x)
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"budget fraction: not a number or ratio: {x!r}") from None
    if not 0 < v <= 1:
        raise ValueError(f"budget fraction: must be in (0, 1], got {x!r}")
    return v


def window_budget(log: AuctionLog, fraction: float) -> float:
    """fraction x the window's total market price (the iPinYou benchmark's budget)."""
    return parse_budget_fraction(fraction) * float(log.market_price.sum())


def log_values(log: AuctionLog, goal: GoalValue) -> np.ndarray:
    if goal.uses_pcvr and log.pcvr is None:
        raise ValueError(f"pcvr: goal {goal.goal!r} needs a pCVR column in the log")
    return goal.values(log.pctr, log.pcvr)


def replay_bids(
    strategy: BidStrategy,
    values: np.ndarray,
    log: AuctionLog,
    sl: slice,
    max_bid: float,
    win_model: WinRateModel | None,
    multiplier: float = 1.0,
    budget_left: float = math.inf,
) -> np.ndarray:
    """`bid_array` over a slice; first-price auctions shaded on their segment's curve."""
    floor = log.floor[sl]
    kw = {"max_bid": max_bid, "multiplier": multiplier, "budget_left": budget_left}
    out = bid_array(strategy, values, floor=floor, **kw)  # type: ignore[arg-type]
    if win_model is None or not log.first_price[sl].any():
        return out
    keys, all_codes = log.shading_groups
    codes = all_codes[sl]
    for code in np.unique(codes[codes >= 0]).tolist():
        idx = np.flatnonzero(codes == code)
        curve = win_model.curve(keys[code])
        out[idx] = bid_array(strategy, values[idx], floor=floor[idx], curve=curve, **kw)  # type: ignore[arg-type]
    return out


@dataclass(frozen=True)
class ReplayResult:
    strategy: str
    budget: float
    auctions: int
    bids: int
    wins: int
    clicks: float
    conversions: float
    spend: float
    ecpc: float  # spend / clicks; NaN without clicks
    ecpa: float  # spend / conversions; NaN without conversions
    ctr: float  # clicks / wins; NaN without wins
    win_rate: float  # wins / bids; NaN without bids
    exhausted_at: int | None  # auction index where the budget ran out (first, in episode mode)
    exhausted_fraction: float | None  # exhausted_at / auctions
    episodes: int = 1
    episodes_exhausted: int = 0
    expected_clicks: float | None = None  # sum of known click probabilities over the wins
    spend_share: float = math.nan  # spend / budget: how much of the budget was spent

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else math.nan


def summarize(
    name: str,
    budget: float,
    log: AuctionLog,
    bids: np.ndarray,
    won: np.ndarray,
    cost: np.ndarray,
    exhausted_at: int | None,
    episodes: int = 1,
    episodes_exhausted: int = 0,
) -> ReplayResult:
    n = len(log)
    nb, nw = int((bids > 0).sum()), int(won.sum())
    clicks = float(log.click[won].sum())
    expected = None if log.expected_click is None else float(log.expected_click[won].sum())
    conv = float(log.conversion[won].sum())
    spend = float(cost.sum())
    return ReplayResult(
        name, budget, n, nb, nw, clicks, conv, spend, _ratio(spend, clicks), _ratio(spend, conv),
        _ratio(clicks, nw), _ratio(nw, nb), exhausted_at,
        None if exhausted_at is None else exhausted_at / n, episodes, episodes_exhausted, expected,
        _ratio(spend, budget) if math.isfinite(budget) else math.nan,
    )  # fmt: skip


def replay(
    log: AuctionLog,
    strategy: BidStrategy,
    budget: float,
    goal: GoalValue,
    *,
    max_bid: float = math.inf,
    win_model: WinRateModel | None = None,
    episode_length: int | None = None,
) -> ReplayResult:
    """Replay a static strategy over the whole window (or in episodes), vectorised."""
    if not budget >= 0:  # inf is allowed: no budget
        raise ValueError(f"budget: must be a number >= 0, got {budget!r}")
    n = len(log)
    values = log_values(log, goal)
    if n == 0:
        none = np.zeros(0)
        return summarize(strategy.name, budget, log, none, none.astype(bool), none, None)
    bids = replay_bids(strategy, values, log, slice(None), max_bid, win_model)
    won, cost = settle(bids, log.market_price, log.floor, log.first_price)
    if episode_length is None:
        played, hit = budget_stop(cost, budget)
        bids[played:], won[played:], cost[played:] = 0.0, False, 0.0
        at = played - 1 if hit else None
        return summarize(strategy.name, budget, log, bids, won, cost, at)
    if not (isinstance(episode_length, int) and episode_length > 0):
        raise ValueError(f"episode_length: must be an integer > 0, got {episode_length!r}")
    eps = -(-n // episode_length)
    pad = eps * episode_length - n
    lengths = np.full(eps, episode_length)
    lengths[-1] -= pad
    budgets = budget * lengths / n if n else np.zeros(eps)
    played, hit = budget_stops(np.pad(cost, (0, pad)).reshape(eps, episode_length), budgets)
    pos = np.arange(n) % episode_length
    live = pos < played[np.arange(n) // episode_length]
    bids, won, cost = np.where(live, bids, 0.0), won & live, np.where(live, cost, 0.0)
    hit_eps = np.flatnonzero(hit & (played > 0))
    at = int(hit_eps[0] * episode_length + played[hit_eps[0]] - 1) if hit_eps.size else None
    return summarize(strategy.name, budget, log, bids, won, cost, at, eps, int(hit.sum()))


def replay_paced(
    log: AuctionLog,
    strategy: BidStrategy,
    budget: float,
    goal: GoalValue,
    *,
    plan: PacingPlan | None = None,
    gains: PidGains = PidGains(),
    interval: float = 900.0,
    start: float | None = None,
    length: float | None = None,
    max_bid: float = math.inf,
    win_model: WinRateModel | None = None,
) -> ReplayResult:
    """Replay with the pacing controller stepping every `interval` seconds over the period
    [start, start + length] (default: the log's time span), spend planned by `plan` (default
    even)."""
    if log.time is None:
        raise ValueError("time: the paced replay needs each auction's time")
    t0 = float(log.time[0]) if start is None else start
    span = float(log.time[-1]) - t0 + 1e-9 if length is None else length
    values = log_values(log, goal)

    def bid_fn(sl: slice, multiplier: float, budget_left: float) -> np.ndarray:
        return replay_bids(
            strategy, values[sl], log, sl, max_bid, win_model, multiplier, budget_left
        )

    run = run_paced(
        log.time, bid_fn, log.market_price, log.floor, log.first_price,
        new_state(budget, t0, span), plan or traffic_plan((1.0,)), gains, interval,
    )  # fmt: skip
    at = None
    if run.exhausted_at is not None:
        at = int(np.searchsorted(log.time, run.exhausted_at, "right")) - 1
    return summarize(strategy.name, budget, log, run.bids, run.won, run.cost, at)
