"""The bid landscape: P(win | bid, segment), learned from our own auction logs.

Our logs only show the market price (the highest competing bid) when we won a second-price
auction. A lost auction says the market price was at least our bid: it is right-censored, not
missing. Dropping lost auctions keeps only the cheap markets we beat and so underestimates
the price of winning (tests/bidding/test_winrate.py measures that bias). A won first-price
auction says only that the market price was below our bid (left-censored).

The estimate is the nonparametric maximum likelihood one. With exact prices and right-censored
losses that is the Kaplan-Meier product-limit estimator, computed directly. When first-price
wins add upper bounds, it is Turnbull's self-consistent (EM) generalisation of Kaplan-Meier,
started from it; each EM step is O(grid) thanks to cumulative sums. Mass beyond the largest
observation (markets we never beat) stays there: win probability tops out below 1, which is
the honest answer.

Curves are fitted per context segment (a key such as "web" or "web|exchange_a", see
`segment_key`) and for every prefix of it; a segment with too little data falls back to its
parent prefix, then to the pooled curve. Only the knots are stored (JSON, no pickle); curves
are piecewise linear between them.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np

POOLED: Final = "*"
SEP: Final = "|"
FORMAT: Final = "bidopt.winrate/1"


def segment_key(*parts: str | None) -> str:
    """Join context fields (coarse to fine, e.g. channel then exchange) into a segment key."""
    return SEP.join("" if p is None else str(p) for p in parts)


@dataclass(frozen=True)
class WinCurve:
    """P(market price < bid), piecewise linear through (xs, ys); flat after the last knot."""

    xs: tuple[float, ...]
    ys: tuple[float, ...]
    n: int = 0  # auctions behind the curve
    wins: int = 0
    _x: np.ndarray = field(init=False, repr=False, compare=False)
    _y: np.ndarray = field(init=False, repr=False, compare=False)
    # Per piece j (between knots j and j + 1): W(b) = intercepts[j] + slopes[j] x b (shading).
    slopes: tuple[float, ...] = field(init=False, repr=False, compare=False)
    intercepts: tuple[float, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        x = np.asarray(self.xs, dtype=np.float64)
        y = np.asarray(self.ys, dtype=np.float64)
        if x.ndim != 1 or x.shape != y.shape or x.shape[0] < 2:
            raise ValueError("win curve: xs and ys must be equal-length lists of >= 2 knots")
        if not (np.all(np.isfinite(x)) and np.all(np.diff(x) > 0) and x[0] >= 0):
            raise ValueError("win curve: xs must be finite, >= 0 and strictly increasing")
        if not (np.all(np.diff(y) >= 0) and y[0] >= 0 and y[-1] <= 1 + 1e-12):
            raise ValueError("win curve: ys must be non-decreasing within [0, 1]")
        slope = np.diff(y) / np.diff(x)
        object.__setattr__(self, "_x", x)
        object.__setattr__(self, "_y", y)
        object.__setattr__(self, "slopes", tuple(slope.tolist()))
        object.__setattr__(self, "intercepts", tuple((y[:-1] - slope * x[:-1]).tolist()))

    def prob(self, bid: float) -> float:
        """Scalar path (serving): a bisection and one interpolation, no numpy."""
        xs, ys = self.xs, self.ys
        i = bisect_right(xs, bid)
        if i == 0:
            return 0.0
        if i == len(xs):
            return ys[-1]
        x0, x1 = xs[i - 1], xs[i]
        return ys[i - 1] + (ys[i] - ys[i - 1]) * (bid - x0) / (x1 - x0)

    def probs(self, bids: np.ndarray) -> np.ndarray:
        return np.interp(np.asarray(bids, dtype=np.float64), self._x, self._y, left=0.0)

    def to_dict(self) -> dict[str, Any]:
        return {"x": list(self.xs), "y": list(self.ys), "n": self.n, "wins": self.wins}


def _grid(values: np.ndarray, max_grid: int) -> np.ndarray:
    u = np.unique(values)
    if u.shape[0] > max_grid:
        u = np.unique(np.quantile(values, np.linspace(0.0, 1.0, max_grid)))
    return np.unique(np.concatenate([[0.0], u]))


def _km(e: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Kaplan-Meier masses per bin (last bin = beyond every observation) from exact + right."""
    at_risk = np.cumsum((e + r)[::-1])[::-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        hazard = np.where(at_risk > 0, e / at_risk, 0.0)
    surv = np.cumprod(1.0 - hazard)
    before = np.concatenate([[1.0], surv[:-1]])
    p = before * hazard
    p[-1] += surv[-1]  # what was never observed to end stays beyond the last price
    return p


def _turnbull(
    e: np.ndarray, r: np.ndarray, left: np.ndarray, max_iter: int, tol: float
) -> np.ndarray:
    """Self-consistency (EM) with exact, right- (m >= bin k) and left-censored (m < bin k)."""
    n = e.sum() + r.sum() + left.sum()
    p = 0.5 * _km(e, r + left) + 0.5 / e.shape[0]  # strictly positive start
    for _ in range(max_iter):
        surv = np.cumsum(p[::-1])[::-1]  # P(bin >= k)
        cdf = np.concatenate([[0.0], np.cumsum(p)[:-1]])  # P(bin < k)
        with np.errstate(invalid="ignore", divide="ignore"):
            share_r = np.cumsum(np.where(r > 0, r / surv, 0.0))
            w_l = np.where(left > 0, left / cdf, 0.0)
        share_l = np.cumsum(w_l[::-1])[::-1] - w_l  # sum over k > j
        new = (e + p * share_r + p * share_l) / n
        if np.max(np.abs(new - p)) < tol:
            return new
        p = new
    return p


def _compress(xs: np.ndarray, ys: np.ndarray, max_knots: int) -> tuple[np.ndarray, np.ndarray]:
    """Keep knots at equal steps of probability (plus both ends): resolution where mass is."""
    if xs.shape[0] <= max_knots:
        return xs, ys
    levels = np.linspace(0.0, ys[-1], max_knots - 1)
    idx = np.searchsorted(ys, levels, side="left")
    keep = np.unique(np.concatenate([[0, xs.shape[0] - 1], np.clip(idx, 0, xs.shape[0] - 1)]))
    return xs[keep], ys[keep]


def estimate_curve(
    exact: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    *,
    max_grid: int = 2000,
    max_knots: int = 64,
    max_iter: int = 2000,
    tol: float = 1e-7,
) -> tuple[np.ndarray, np.ndarray]:
    """CDF knots of the market price from exact prices, lower bounds (losses: market >= bid)
    and upper bounds (first-price wins: market < bid)."""
    allv = np.concatenate([exact, lower, upper])
    g = _grid(allv, max_grid)
    top = float(allv.max(initial=0.0)) * (1 + 1e-9) + 1e-9
    k = g.shape[0]
    e = np.bincount(np.searchsorted(g, exact, "right") - 1, minlength=k + 1).astype(float)
    r = np.bincount(np.searchsorted(g, lower, "right") - 1, minlength=k + 1).astype(float)
    left = np.bincount(np.searchsorted(g, upper, "left"), minlength=k + 1).astype(float)
    p = _km(e, r) if upper.shape[0] == 0 else _turnbull(e, r, left, max_iter, tol)
    xs = np.concatenate([g, [top]])
    ys = np.minimum(np.concatenate([[0.0], np.cumsum(p[:k])]), 1.0)
    return _compress(xs, ys, max_knots)


def _as_array(name: str, x: object, n: int | None) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != 1 or (n is not None and a.shape[0] != n):
        raise ValueError(f"{name}: expected a 1-D array of length {n}, got shape {a.shape}")
    return a


def _first_bad(name: str, bad: np.ndarray, values: np.ndarray, why: str) -> None:
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"{name}: {int(bad.sum())} row(s) {why} (first: row {i}, {values[i]!r})")


class WinRateModel:
    """P(win | bid, segment) from censored auction logs; see the module docstring.

    `fit` learns `curves_` (segment key -> WinCurve, always including the pooled "*").
    """

    def __init__(
        self,
        min_segment_size: int = 1000,
        min_segment_wins: int = 50,
        max_knots: int = 64,
        max_grid: int = 2000,
    ) -> None:
        self.min_segment_size = min_segment_size
        self.min_segment_wins = min_segment_wins
        self.max_knots = max_knots
        self.max_grid = max_grid

    def fit(
        self,
        bid: object,
        won: object,
        paying_price: object,
        auction_type: object,
        segment: object | None = None,
        market_price: object | None = None,
    ) -> WinRateModel:
        """Learn from our own auctions. `auction_type` is "first"/"second" (or bool: first
        price). `market_price`, where finite, is taken as known exactly (synthetic logs, or
        exchanges that report the minimum bid to win); otherwise second-price wins use the
        paying price, first-price wins give an upper bound, losses a lower bound."""
        b = _as_array("bid", bid, None).astype(np.float64)
        n = b.shape[0]
        if n == 0:
            raise ValueError("bid: no auctions to learn from")
        w = _as_array("won", won, n)
        if w.dtype != bool:
            _first_bad("won", ~np.isin(w, (0, 1)), w, "are not true/false")
            w = w.astype(bool)
        pay = _as_array("paying_price", paying_price, n).astype(np.float64)
        at = _as_array("auction_type", auction_type, n)
        if at.dtype == bool:
            first = at
        else:
            bad = ~np.isin(at, ("first", "second"))
            _first_bad("auction_type", bad, at, "are not first/second")
            first = at == "first"
        _first_bad("bid", ~(np.isfinite(b) & (b >= 0)), b, "are not finite prices >= 0")
        mk = np.full(n, np.nan)
        if market_price is not None:
            mk = _as_array("market_price", market_price, n).astype(np.float64)
            _first_bad("market_price", mk < 0, mk, "are negative")
        known = np.isfinite(mk)
        second_win = w & ~first & ~known
        _first_bad(
            "paying_price",
            second_win & ~(np.isfinite(pay) & (pay >= 0)),
            pay,
            "of second-price wins are not finite prices >= 0",
        )
        exact_v = np.where(known, mk, pay)
        is_exact = known | second_win
        is_upper = w & first & ~known
        _first_bad("bid", is_upper & (b <= 0), b, "won a first-price auction with a bid of 0")
        is_lower = ~w & ~known
        keys = np.full(n, POOLED) if segment is None else _as_array("segment", segment, n)
        keys = keys.astype(str)

        def fit_rows(mask: np.ndarray) -> WinCurve:
            xs, ys = estimate_curve(
                exact_v[mask & is_exact],
                b[mask & is_lower],
                b[mask & is_upper],
                max_grid=self.max_grid,
                max_knots=self.max_knots,
            )
            n_rows, n_wins = int(mask.sum()), int(w[mask].sum())
            return WinCurve(tuple(xs.tolist()), tuple(ys.tolist()), n_rows, n_wins)

        curves = {POOLED: fit_rows(np.ones(n, dtype=bool))}
        uniq, inverse = np.unique(keys, return_inverse=True)
        groups: dict[str, list[int]] = {}
        for i, key in enumerate(uniq.tolist()):
            parts = key.split(SEP)
            for depth in range(1, len(parts) + 1):
                groups.setdefault(SEP.join(parts[:depth]), []).append(i)
        for key, ids in groups.items():
            if key == POOLED:
                continue
            mask = np.isin(inverse, ids)
            if mask.sum() >= self.min_segment_size and w[mask].sum() >= self.min_segment_wins:
                curves[key] = fit_rows(mask)
        self.curves_ = curves
        self._resolved: dict[str, WinCurve] = {}
        return self

    def _fitted(self) -> dict[str, WinCurve]:
        try:
            return self.curves_
        except AttributeError:
            raise ValueError("WinRateModel: call fit() or from_dict() first") from None

    def curve(self, segment: str | None = None) -> WinCurve:
        """The segment's curve, else its closest fitted prefix, else the pooled one."""
        curves = self._fitted()
        key = POOLED if segment is None else segment
        hit = self._resolved.get(key)
        if hit is not None:
            return hit
        probe = key
        while probe not in curves and SEP in probe:
            probe = probe.rsplit(SEP, 1)[0]
        found = curves.get(probe, curves[POOLED])
        if len(self._resolved) < 10_000:  # unknown keys from requests must not grow it forever
            self._resolved[key] = found
        return found

    def win_prob_one(self, bid: float, segment: str | None = None) -> float:
        return self.curve(segment).prob(bid)

    def win_prob(self, bid: object, segment: object | None = None) -> np.ndarray:
        """Vectorised: `segment` is one key for all bids, or an array of keys per bid."""
        b = np.asarray(bid, dtype=np.float64)
        if segment is None or isinstance(segment, str):
            return self.curve(segment).probs(b)
        seg = np.asarray(segment).astype(str)
        out = np.empty(b.shape)
        for key in np.unique(seg).tolist():
            m = seg == key
            out[m] = self.curve(key).probs(b[m])
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-able; `from_dict` rebuilds the model (the service loads it, no pickle)."""
        return {
            "format": FORMAT,
            "params": {
                "min_segment_size": self.min_segment_size,
                "min_segment_wins": self.min_segment_wins,
                "max_knots": self.max_knots,
                "max_grid": self.max_grid,
            },
            "segments": {k: c.to_dict() for k, c in self._fitted().items()},
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> WinRateModel:
        if d.get("format") != FORMAT:
            raise ValueError(f"win-rate model: format must be {FORMAT!r}, got {d.get('format')!r}")
        try:
            model = cls(**d.get("params", {}))
            segments = dict(d.get("segments", {}))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"win-rate model: params/segments: {exc}") from None
        curves: dict[str, WinCurve] = {}
        for key, c in segments.items():
            try:
                curves[key] = WinCurve(
                    tuple(float(x) for x in c["x"]),
                    tuple(float(y) for y in c["y"]),
                    int(c.get("n", 0)),
                    int(c.get("wins", 0)),
                )
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"win-rate model: segment {key!r}: {exc}") from None
        if POOLED not in curves:
            raise ValueError(f"win-rate model: segment {POOLED!r} (pooled) is missing")
        model.curves_ = curves
        model._resolved = {}
        return model


def true_lognormal_cdf(x: np.ndarray, mu: float, sigma: float) -> np.ndarray:
    """Log-normal CDF without scipy (tests and benches compare estimates against it)."""
    x = np.asarray(x, dtype=np.float64)
    z = (np.log(np.maximum(x, 1e-300)) - mu) / (sigma * math.sqrt(2.0))
    erf = np.vectorize(math.erf, otypes=[float])
    return np.where(x > 0, 0.5 * (1.0 + erf(z)), 0.0)
