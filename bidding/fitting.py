"""Fitting strategy parameters on a training window (pure; arrays in, a strategy out).

Every fit replays the training window through `auction.settle` and the bid function the replay
uses (`bids`: by default `strategies.bid_array` with the window's floors and max bid; the replay
passes its own, which shades first-price auctions on the win-rate curve), so a fitted parameter
means the same thing everywhere. A fit that ignored shading would solve lambda for unshaded
first-price payments and then underspend the budget in replay:

- constant, random, linear: the bid level that wins the most clicks under the budget (ties: the
  cheaper), on a geometric grid, as in the iPinYou benchmark;
- ORTB1/ORTB2: c by least squares between the win function (b / (c + b), or b^2 / (c^2 + b^2))
  and the empirical win curve (market prices, or a censored Kaplan-Meier curve from winrate.py);
  then lambda by bisection so that the window's spend equals the budget;
- Lagrangian: lambda by bisection on the same spend equation (0 when the budget does not bind;
  for max_clicks / max_conversions, whose value is not money, down to -1: the fitted scale);
- rlb: the dynamic program of bidding/rlb.py, solved for the episode length (or 1,000 auctions)
  and the window's budget per auction, on a market-price model (default: the window's prices).

A fit that ends at the edge of its search range (`at_bound`) could not spend the budget under
the goal (or could not stay within it): the simulate command reports it rather than let a 4%
spend pass silently.

Spend is monotone in every lambda, which is what makes bisection safe.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from bidding.auction import budget_stop, settle
from bidding.rlb import MarketModel, fit_rlb, market_from_prices
from bidding.strategies import (
    BidStrategy,
    Constant,
    Lagrangian,
    Linear,
    Ortb1,
    Ortb2,
    RandomBid,
    Value,
    bid_array,
    strategy_name,
)

_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0
LAMBDA_RANGE = (1e-15, 1e15)  # ORTB's lambda search
SCALE_FLOOR = 1e-15  # max_* goals: 1 + lambda searched in [SCALE_FLOOR, 1]
RLB_HORIZON = 1000  # auctions per solved table without episodes (longer: the paper's mapping)
RLB_COVER = 1.5  # the table covers 1.5 x the fit's episode budget (replay budgets differ a bit)

BidFn = Callable[[BidStrategy, np.ndarray], np.ndarray]
"""(strategy, per-auction values) -> the bids on the training window, in the replay's way."""


def _bidder(bids: BidFn | None, floor: np.ndarray, max_bid: float) -> BidFn:
    if bids is not None:
        return bids
    return lambda strategy, values: bid_array(strategy, values, floor=floor, max_bid=max_bid)


def _inputs(
    market: np.ndarray, floor: np.ndarray | None, first_price: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    m = np.asarray(market, dtype=np.float64)
    if m.ndim != 1 or m.shape[0] == 0 or not np.all(np.isfinite(m)) or np.any(m < 0):
        raise ValueError("market_price: need a non-empty 1-D array of finite prices >= 0")
    f = np.zeros(m.shape) if floor is None else np.broadcast_to(np.asarray(floor, float), m.shape)
    fp = np.zeros(m.shape, bool) if first_price is None else np.asarray(first_price, bool)
    return m, f, fp


def _spend(
    bid: BidFn,
    strategy: BidStrategy,
    values: np.ndarray,
    m: np.ndarray,
    f: np.ndarray,
    fp: np.ndarray,
) -> float:
    return float(settle(bid(strategy, values), m, f, fp)[1].sum())


def _score(
    bid: BidFn,
    strategy: BidStrategy,
    values: np.ndarray,
    m: np.ndarray,
    f: np.ndarray,
    fp: np.ndarray,
    clicks: np.ndarray,
    budget: float,
) -> tuple[float, float, float]:
    """(clicks, value won, -spend) under the budget: compared in that order."""
    won, cost = settle(bid(strategy, values), m, f, fp)
    played, _ = budget_stop(cost, budget)
    w = won[:played]
    return (
        float(clicks[:played][w].sum()),
        float(values[:played][w].sum()),
        -float(cost[:played].sum()),
    )


def _best_on_grid(
    bid: BidFn,
    make: Callable[[float], BidStrategy],
    grid: np.ndarray,
    values: np.ndarray,
    m: np.ndarray,
    f: np.ndarray,
    fp: np.ndarray,
    clicks: np.ndarray,
    budget: float,
) -> BidStrategy:
    """Most clicks; on sparse logs many bids tie on clicks, so then the most value won (the
    model's expected clicks; for value-blind strategies, wins), then the least spend."""
    scored = [
        (_score(bid, make(float(x)), values, m, f, fp, clicks, budget), float(x)) for x in grid
    ]
    best = max(scored, key=lambda t: t[0])
    return make(best[1])


def price_grid(m: np.ndarray, size: int) -> np.ndarray:
    """The bid levels the grid fits try (also bidding.grid's episode tuning): geometric, from
    the 1st percentile of the market to 4x its 99.9th."""
    lo = max(float(np.quantile(m, 0.01)), 1e-3)
    hi = max(float(np.quantile(m, 0.999)) * 4.0, lo * 10.0)
    return np.geomspace(lo, hi, size)


def fit_constant_bid(
    market: np.ndarray,
    clicks: np.ndarray,
    budget: float,
    *,
    floor: np.ndarray | None = None,
    first_price: np.ndarray | None = None,
    max_bid: float = math.inf,
    grid_size: int = 48,
    bids: BidFn | None = None,
) -> Constant:
    m, f, fp = _inputs(market, floor, first_price)
    ones = np.ones(m.shape)
    c = np.asarray(clicks, dtype=np.float64)
    grid = price_grid(m, grid_size)
    bid = _bidder(bids, f, max_bid)
    return _best_on_grid(bid, Constant, grid, ones, m, f, fp, c, budget)  # type: ignore[return-value]


def fit_random_bid(
    market: np.ndarray,
    clicks: np.ndarray,
    budget: float,
    *,
    floor: np.ndarray | None = None,
    first_price: np.ndarray | None = None,
    max_bid: float = math.inf,
    grid_size: int = 24,
    seed: int = 0,
    bids: BidFn | None = None,
) -> RandomBid:
    m, f, fp = _inputs(market, floor, first_price)
    c = np.asarray(clicks, dtype=np.float64)
    grid = price_grid(m, grid_size)

    def make(x: float) -> BidStrategy:
        return RandomBid(0.0, x, seed)

    bid = _bidder(bids, f, max_bid)
    return _best_on_grid(bid, make, grid, np.ones(m.shape), m, f, fp, c, budget)  # type: ignore[return-value]


def fit_linear_base_bid(
    values: np.ndarray,
    market: np.ndarray,
    clicks: np.ndarray,
    budget: float,
    *,
    floor: np.ndarray | None = None,
    first_price: np.ndarray | None = None,
    max_bid: float = math.inf,
    grid_size: int = 48,
    bids: BidFn | None = None,
) -> Linear:
    """Base bid maximising clicks under the budget; avg value is the window's mean value."""
    m, f, fp = _inputs(market, floor, first_price)
    v = np.asarray(values, dtype=np.float64)
    avg = float(np.nanmean(v)) if np.any(np.isfinite(v)) else 0.0
    if not avg > 0:
        raise ValueError("values: the training window's average value must be > 0")
    c = np.asarray(clicks, dtype=np.float64)

    def make(x: float) -> BidStrategy:
        return Linear(x, avg)

    grid = price_grid(m, grid_size)
    bid = _bidder(bids, f, max_bid)
    return _best_on_grid(bid, make, grid, v, m, f, fp, c, budget)  # type: ignore[return-value]


def empirical_win_curve(market: np.ndarray, points: int = 99) -> tuple[np.ndarray, np.ndarray]:
    """(bids, P(market < bid)) at market-price quantiles: the uncensored win curve."""
    m = np.sort(np.asarray(market, dtype=np.float64))
    b = np.unique(np.quantile(m, np.linspace(0.01, 0.99, points)))
    return b, np.searchsorted(m, b, side="left") / m.shape[0]


def win_function(kind: str, c: float, b: np.ndarray) -> np.ndarray:
    """ORTB's parametric win functions: b / (c + b) (ortb1), b^2 / (c^2 + b^2) (ortb2)."""
    return b / (c + b) if kind == "ortb1" else b * b / (c * c + b * b)


def fit_win_function_c(bids: np.ndarray, win: np.ndarray, kind: str = "ortb1") -> float:
    """Least-squares c for the win function against (bids, win probability) points."""
    b = np.asarray(bids, dtype=np.float64)
    w = np.asarray(win, dtype=np.float64)
    if b.shape != w.shape or b.shape[0] < 2 or not np.all(b > 0):
        raise ValueError("win curve: need >= 2 points with bids > 0")

    def loss(logc: float) -> float:
        return float(np.sum((win_function(kind, math.exp(logc), b) - w) ** 2))

    center = math.log(float(np.median(b)))
    coarse = np.linspace(center - 8.0, center + 8.0, 161)
    i = int(np.argmin([loss(x) for x in coarse]))
    lo, hi = coarse[max(i - 1, 0)], coarse[min(i + 1, coarse.shape[0] - 1)]
    for _ in range(60):  # golden-section on the bracketing cell
        x1, x2 = hi - _GOLDEN * (hi - lo), lo + _GOLDEN * (hi - lo)
        if loss(x1) <= loss(x2):
            hi = x2
        else:
            lo = x1
    return math.exp(0.5 * (lo + hi))


def _solve_lambda(spend: Callable[[float], float], budget: float, lo: float, hi: float) -> float:
    """The lambda (searched geometrically in [lo, hi]) where decreasing spend meets the budget."""
    if not (math.isfinite(budget) and budget > 0):
        raise ValueError(f"budget: must be a finite number > 0, got {budget!r}")
    if spend(lo) <= budget:
        return lo
    if spend(hi) > budget:
        return hi
    for _ in range(100):
        mid = math.sqrt(lo * hi)
        if spend(mid) > budget:
            lo = mid
        else:
            hi = mid
        if hi / lo < 1.0 + 1e-4:  # spend within ~0.01%: finer only costs replays
            break
    return hi  # the side that does not overspend


def fit_ortb(
    values: np.ndarray,
    market: np.ndarray,
    budget: float,
    *,
    kind: str = "ortb1",
    floor: np.ndarray | None = None,
    first_price: np.ndarray | None = None,
    max_bid: float = math.inf,
    win_curve: tuple[np.ndarray, np.ndarray] | None = None,
    bids: BidFn | None = None,
) -> Ortb1 | Ortb2:
    """c from the win curve (default: the window's empirical one), then lambda for the budget."""
    if kind not in ("ortb1", "ortb2"):
        raise ValueError(f"kind: must be 'ortb1' or 'ortb2', got {kind!r}")
    m, f, fp = _inputs(market, floor, first_price)
    v = np.asarray(values, dtype=np.float64)
    points, win = win_curve if win_curve is not None else empirical_win_curve(m)
    keep = np.asarray(points) > 0
    c = fit_win_function_c(np.asarray(points)[keep], np.asarray(win)[keep], kind)
    cls = Ortb1 if kind == "ortb1" else Ortb2
    bid = _bidder(bids, f, max_bid)
    lam = _solve_lambda(lambda x: _spend(bid, cls(c, x), v, m, f, fp), budget, *LAMBDA_RANGE)
    return cls(c, lam)


def fit_lagrangian_lambda(
    values: np.ndarray,
    market: np.ndarray,
    budget: float,
    *,
    floor: np.ndarray | None = None,
    first_price: np.ndarray | None = None,
    max_bid: float = math.inf,
    bids: BidFn | None = None,
    scale_free: bool = False,
) -> Lagrangian:
    """lambda >= 0 with value / (1 + lambda) spending the budget; 0 when bidding value fits.
    `scale_free` (a max_* goal): lambda may go below 0, down to -1 + SCALE_FLOOR."""
    m, f, fp = _inputs(market, floor, first_price)
    v = np.asarray(values, dtype=np.float64)
    bid = _bidder(bids, f, max_bid)

    def spend(lam: float) -> float:
        return _spend(bid, Lagrangian(lam), v, m, f, fp)

    if spend(0.0) <= budget:
        if not scale_free:
            return Lagrangian(0.0)
        x = _solve_lambda(lambda one_plus: spend(one_plus - 1.0), budget, SCALE_FLOOR, 1.0)
        return Lagrangian(x - 1.0)
    return Lagrangian(_solve_lambda(spend, budget, 1e-9, 1e12))


def at_bound(strategy: BidStrategy, market: np.ndarray, *, scale_free: bool = False) -> str:
    """Why a fitted parameter sits at the edge of its search range ("" when it does not): the
    strategy could not spend the fit window's budget under the goal (or only overspend it)."""
    top = float(price_grid(np.asarray(market, dtype=np.float64), 2)[-1])
    if isinstance(strategy, Lagrangian):
        if scale_free and strategy.lam <= SCALE_FLOOR - 1.0 + 1e-12:
            return "its scale is at the search bound"
        if not scale_free and strategy.lam == 0.0:
            return "lambda is at its bound 0: bidding the value itself does not spend the budget"
    if isinstance(strategy, Ortb1 | Ortb2):
        lo, hi = LAMBDA_RANGE
        if strategy.lam <= lo * (1 + 1e-6):
            return f"lambda is at its lower bound {lo:g}"
        if strategy.lam >= hi * (1 - 1e-6):
            return f"lambda is at its upper bound {hi:g}"
    if isinstance(strategy, Linear | Constant):
        level = strategy.base_bid if isinstance(strategy, Linear) else strategy.bid
        if level >= top * (1 - 1e-9):
            return f"its bid level is at the top of its grid ({top:.4g})"
    if isinstance(strategy, RandomBid) and strategy.high >= top * (1 - 1e-9):
        return f"its range is at the top of its grid ({top:.4g})"
    return ""


def fit_strategy(
    name: str,
    values: np.ndarray,
    market: np.ndarray,
    clicks: np.ndarray,
    budget: float,
    *,
    floor: np.ndarray | None = None,
    first_price: np.ndarray | None = None,
    max_bid: float = math.inf,
    seed: int = 0,
    win_curve: tuple[np.ndarray, np.ndarray] | None = None,
    bids: BidFn | None = None,
    scale_free: bool = False,
    horizon: int | None = None,
    market_model: MarketModel | None = None,
) -> BidStrategy:
    """Fit any strategy by name on the training window (`budget` is that window's budget).

    `scale_free`: the goal has no target (max_*). rlb: `horizon` auctions per episode (default
    RLB_HORIZON) and `market_model` (default: fitted on `market`)."""
    key = strategy_name(name)
    if key == "rlb":
        v = np.asarray(values, dtype=np.float64)
        t = horizon or min(RLB_HORIZON, v.shape[0])
        model = market_model or market_from_prices(market)
        per_episode = budget / v.shape[0] * t
        if not (math.isfinite(per_episode) and per_episode > 0):
            raise ValueError(f"budget: rlb needs a finite budget > 0, got {budget!r}")
        return fit_rlb(v, model, t, per_episode, cover=RLB_COVER)
    kw = {"floor": floor, "first_price": first_price, "max_bid": max_bid, "bids": bids}
    if key == "value":
        return Value()
    if key == "constant":
        return fit_constant_bid(market, clicks, budget, **kw)  # type: ignore[arg-type]
    if key == "random":
        return fit_random_bid(market, clicks, budget, seed=seed, **kw)  # type: ignore[arg-type]
    if key == "linear":
        return fit_linear_base_bid(values, market, clicks, budget, **kw)  # type: ignore[arg-type]
    if key in ("ortb1", "ortb2"):
        return fit_ortb(values, market, budget, kind=key, win_curve=win_curve, **kw)  # type: ignore[arg-type]
    return fit_lagrangian_lambda(values, market, budget, scale_free=scale_free, **kw)  # type: ignore[arg-type]
