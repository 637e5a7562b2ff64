"""RLB: a bid on the state (auctions left, budget left), by dynamic programming.

Cai et al., "Real-Time Bidding by Reinforcement Learning in Display Advertising" (WSDM 2017;
code han-cai/rlb-dp). With t auctions left and budget b, V(t, b) is the value (expected clicks,
or whatever the goal's value counts) the rest of the episode can still win. Each auction draws a
value theta from the fit window's value distribution and a market price d from the market-price
model m; a bid wins when it beats d (ties lose), pays d (second price) and is capped by b:

    V(t, b) = V(t-1, b) + E_theta[ sum_{d < b} m(d) max(0, theta - (V(t-1, b) - V(t-1, b-d))) ]

V(t-1, .) is non-decreasing, so the gap g(d) = V(t-1, b) - V(t-1, b-d) grows with d and the
optimal bid for theta wins exactly the prices with g(d) <= theta: the largest price whose
expected gain beats the value of keeping the budget. That is the bid `price_at` returns. The
paper's DP uses the mean theta (`atoms=1`); with more atoms the expectation is over the value
distribution itself (quantile-group means), the Bellman equation without that simplification.

Speed: budgets in the tens of thousands of price units would need T x B x prices cells; the
table is kept on a coarse budget grid (at most `grid` points, linear interpolation between them),
measured against the exact DP (grid step 1) in tests/bidding/test_rlb.py and bench/rlb_episodes.py.
The kernel is numba-compiled (cached next to the module, as features/forest.py) and stops at the
first price whose gap beats the largest theta. For more auctions left than the table was solved
for, the state is mapped as in the paper's large-scale section: (t, b) -> (T, b x T / t), same
budget per auction.

A bid from a solved table is a few dozen float operations and one C-level bisect on the row
(`array.array`, no numpy scalars, no numba dispatch, which costs more than the work here);
bench/rlb_episodes.py times it against linear's bid through the same `bid_one`.
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_left
from dataclasses import dataclass, field
from typing import ClassVar

import numba
import numpy as np

DEFAULT_GRID = 2048  # budget grid points; bench/rlb_episodes.py measures the cost against exact


@dataclass(frozen=True)
class MarketModel:
    """P(market price falls in bin k) for bins [k step, (k+1) step); mass above the last bin is
    left out of `pdf` (never won: bids stop at the last bin's edge)."""

    step: float
    pdf: np.ndarray

    def __post_init__(self) -> None:
        p = self.pdf
        if not (math.isfinite(self.step) and self.step > 0):
            raise ValueError(f"market model: step must be a finite number > 0, got {self.step!r}")
        if p.ndim != 1 or p.shape[0] == 0 or not np.all(np.isfinite(p)) or np.any(p < 0):
            raise ValueError("market model: pdf must be a non-empty 1-D array of numbers >= 0")
        if not 0 < float(p.sum()) <= 1 + 1e-9:
            raise ValueError(f"market model: pdf must sum to (0, 1], got {float(p.sum())}")


def market_from_counts(counts: object, *, step: float = 1.0, smoothing: float = 1.0) -> MarketModel:
    """A histogram (index i = auctions at price i x step), add-`smoothing` over its support
    (bins up to the highest observed price), so a price unseen in a small window is not
    certain to lose."""
    c = np.asarray(counts, dtype=np.float64)
    if c.ndim != 1 or c.shape[0] == 0 or not np.all(np.isfinite(c)) or np.any(c < 0):
        raise ValueError("market_price_counts: need a 1-D list of counts >= 0")
    seen = np.flatnonzero(c > 0)
    if seen.size == 0:
        raise ValueError("market_price_counts: all zero")
    c = c[: int(seen[-1]) + 1] + smoothing
    return MarketModel(float(step), c / c.sum())


def market_from_prices(
    prices: np.ndarray, *, smoothing: float = 1.0, bins: int = 256
) -> MarketModel:
    """Integer prices (iPinYou's fen) keep step 1 when they fit in 4 x `bins` bins; otherwise
    `bins` bins up to the 99.9th percentile (the tail above stays unwinnable)."""
    m = np.asarray(prices, dtype=np.float64)
    if m.ndim != 1 or m.shape[0] == 0 or not np.all(np.isfinite(m)) or np.any(m < 0):
        raise ValueError("market_price: need a non-empty 1-D array of finite prices >= 0")
    top = float(m.max())
    if np.all(m == np.round(m)) and top < 4 * bins:
        step = 1.0
    else:
        step = max(float(np.quantile(m, 0.999)), 1e-9) / bins
    k = np.floor(m / step).astype(np.int64)
    counts = np.bincount(k[k < 4 * bins], minlength=1).astype(np.float64)
    model = market_from_counts(counts, step=step, smoothing=smoothing)
    keep = float((k < 4 * bins).mean())  # the cut tail stays in the denominator
    return MarketModel(step, model.pdf * keep)


def value_atoms(values: np.ndarray, atoms: int) -> tuple[np.ndarray, np.ndarray]:
    """(sorted group means, weights): `atoms` equal-count groups of the values; 1 = the mean."""
    v = np.sort(np.asarray(values, dtype=np.float64)[np.isfinite(values)])
    if v.size == 0 or not float(v.mean()) > 0:
        raise ValueError("values: rlb needs finite values with a mean > 0")
    if not (isinstance(atoms, int) and atoms >= 1):
        raise ValueError(f"atoms: must be an integer >= 1, got {atoms!r}")
    groups = np.array_split(v, min(atoms, v.size))
    means = np.array([g.mean() for g in groups])
    weights = np.array([g.size for g in groups], dtype=np.float64) / v.size
    return means, weights


@numba.njit(cache=True, nogil=True)
def _solve(
    horizon: int, cells: int, s: float, pdf: np.ndarray, theta: np.ndarray, w: np.ndarray
) -> np.ndarray:  # pragma: no cover - compiled; tested through solve_rlb against brute force
    """V[t, j] at budget j x s (in price bins), t = 0..horizon; see the module docstring."""
    kbins = pdf.shape[0]
    na = theta.shape[0]
    top = theta[na - 1]
    v = np.zeros((horizon + 1, cells))
    for t in range(1, horizon + 1):
        prev = v[t - 1]
        cur = v[t]
        for j in range(cells):
            b = j * s
            vb = prev[j]
            kmax = min(kbins - 1, math.ceil(b - 1e-9) - 1)  # prices strictly below b
            mass = 0.0
            cost = 0.0
            gain = 0.0
            i = 0
            for k in range(kmax + 1):
                x = (b - k) / s
                i0 = int(x)
                f = x - i0
                u = (
                    prev[i0]
                    if (f <= 0.0 or i0 + 1 >= cells)
                    else prev[i0] + f * (prev[i0 + 1] - prev[i0])
                )
                g = vb - u
                if g > top:
                    break
                while i < na and theta[i] < g:
                    gain += w[i] * (theta[i] * mass - cost)
                    i += 1
                mass += pdf[k]
                cost += pdf[k] * g
            while i < na:
                gain += w[i] * (theta[i] * mass - cost)
                i += 1
            cur[j] = vb + gain
    return v


@dataclass(frozen=True, eq=False)
class RlbTable:
    """V(t, b) for t = 0..horizon on a budget grid of `budget_step` price units."""

    values: np.ndarray  # (horizon + 1, cells)
    budget_step: float  # price units between grid points
    market: MarketModel
    horizon: int
    budget: float  # the budget the table was solved for (price units)


def solve_rlb(
    market: MarketModel,
    theta: np.ndarray,
    weights: np.ndarray,
    horizon: int,
    budget: float,
    *,
    grid: int | None = DEFAULT_GRID,
    cover: float = 1.0,
) -> RlbTable:
    """Solve V up to `horizon` auctions and `cover` x `budget`; `grid=None` is the exact DP (one
    grid point per price bin), otherwise at most `grid` points. Budgets above the table bid as
    at its top."""
    if not (isinstance(horizon, int) and horizon >= 1):
        raise ValueError(f"horizon: must be an integer >= 1 (auctions), got {horizon!r}")
    if not (math.isfinite(budget) and budget > 0):
        raise ValueError(f"budget: must be a finite number > 0, got {budget!r}")
    th = np.ascontiguousarray(theta, dtype=np.float64)
    w = np.ascontiguousarray(weights, dtype=np.float64)
    if th.ndim != 1 or th.shape != w.shape or th.size == 0 or np.any(np.diff(th) < 0):
        raise ValueError("theta: need sorted values with one weight each")
    if not (math.isfinite(cover) and cover >= 1.0):
        raise ValueError(f"cover: must be a number >= 1, got {cover!r}")
    units = budget * cover / market.step
    s = 1.0 if grid is None else max(1.0, units / max(int(grid) - 2, 1))
    cells = math.ceil(units / s) + 2
    v = _solve(horizon, cells, s, np.ascontiguousarray(market.pdf), th, w)
    return RlbTable(v, s * market.step, market, horizon, float(budget))


@dataclass(frozen=True, eq=False)
class Rlb:
    """The RLB bid function over a solved table. `price_at` is the state-aware bid; `price` and
    `prices` bid at the state the table was solved for (an episode's start), so rlb also meets
    the static BidStrategy contract."""

    name: ClassVar[str] = "rlb"
    table: RlbTable
    # (horizon, cells, 1 / grid step in bins, grid step in bins, 1 / price step, price step,
    #  grid points a price bin can reach, last price bin, the table's values row after row)
    _c: tuple[int, int, float, float, float, float, int, int, array] = field(  # type: ignore[type-arg]
        init=False, repr=False
    )

    def __post_init__(self) -> None:
        tab = self.table
        flat = array("d")
        flat.frombytes(np.ascontiguousarray(tab.values, dtype=np.float64).tobytes())
        step = tab.market.step
        s = tab.budget_step / step
        bins = int(tab.market.pdf.shape[0])
        consts = (
            tab.horizon, int(tab.values.shape[1]), 1.0 / s, s, 1.0 / step, step,
            int(bins / s) + 1, bins - 1, flat,
        )  # fmt: skip
        object.__setattr__(self, "_c", consts)

    def price_at(self, value: float, auctions_left: int, budget_left: float) -> float:
        """The bid with `auctions_left` auctions (this one included) and `budget_left` to go.

        Written for the per-impression path (about 40 bytecode lines): locals only, one C-level
        bisect over the grid points a price bin can reach. The bid is capped by the budget
        left, which also keeps it to the prices strictly below the budget, as the DP assumes."""
        if not (auctions_left >= 1 and budget_left > 0.0 and value > 0.0):
            return 0.0
        horizon, cells, inv_s, s, inv_step, step, reach, last, row = self._c
        b = budget_left * inv_step  # price bins
        t = auctions_left
        if t > horizon:  # the paper's mapping: same budget per auction, T auctions
            b = b * horizon / t
            t = horizon
        x = b * inv_s
        if x > cells - 1:  # richer than the table: bid as at its top
            x = cells - 1.0
            b = x * s
        i0 = int(x)
        start = (t - 1) * cells  # V(t-1, .) starts here
        at = start + i0
        vb = row[at]
        f = x - i0
        if f > 0.0:
            vb += f * (row[at + 1] - vb)
        y = vb - value
        lo = at - reach
        if lo < start:
            lo = start
        i = bisect_left(row, y, lo, at + 1)  # the first grid point with V >= V(b) - value
        if i == lo:
            k = int(b - (lo - start) * s + 1e-9)
        else:
            r0 = row[i - 1]
            k = int(b - ((i - 1 - start) + (y - r0) / (row[i] - r0)) * s + 1e-9)
        # k: the highest price bin whose gap is within value
        if k > last:
            k = last
        bid = (k + 1) * step  # beats every price in bins 0..k
        return bid if bid < budget_left else budget_left

    def price(self, value: float) -> float:
        return self.price_at(value, self.table.horizon, self.table.budget)

    def prices(self, values: np.ndarray) -> np.ndarray:
        t, b = self.table.horizon, self.table.budget
        flat = np.asarray(values, dtype=np.float64).reshape(-1)
        out = np.fromiter((self.price_at(v, t, b) for v in flat.tolist()), np.float64, flat.size)
        return out.reshape(np.shape(values))


def fit_rlb(
    values: np.ndarray,
    market: MarketModel,
    horizon: int,
    budget: float,
    *,
    atoms: int = 1,
    grid: int | None = DEFAULT_GRID,
    cover: float = 1.0,
) -> Rlb:
    """RLB for episodes of `horizon` auctions with `budget` each, from the fit window's values."""
    theta, weights = value_atoms(values, atoms)
    return Rlb(solve_rlb(market, theta, weights, horizon, budget, grid=grid, cover=cover))
