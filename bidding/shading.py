"""First-price bid shading: the bid that maximises expected surplus on the segment's win curve.

In a first-price auction the winner pays its bid, so bidding the value earns nothing. The
expected surplus of bidding b is (value - b) x W(b), W the win curve learned from our logs
(winrate.py). W is piecewise linear, so on each piece the surplus is a concave quadratic whose
maximum is its stationary point clipped to the piece: the exact argmax is the best of one
candidate per piece. No grid or golden-section search, which would assume a unimodal surplus
(a Kaplan-Meier curve does not give one). The search range is [floor, min(value, max bid)]:
below the floor nothing can be won, above the value every win loses money.

Scanning all pieces costs ~50 us per impression in Python, too slow for serving. The surplus
has increasing differences in (bid, value), so the optimal bid is non-decreasing in the value
(Topkis). A per-curve table of the optimal piece at a grid of values therefore brackets the
optimum for any value between two grid points to a few pieces; only when the floor or the max
bid excludes that optimum is the whole allowed range scanned. The answer is exact either way.

Second-price auctions are bid truthfully (no call here): the winner pays the market price.
`shade` (floats, serving) and `shade_array` (numpy, replay) apply the same rule in the same
order; tests/bidding/test_shading.py checks they agree and that both are exact.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from bidding.winrate import WinCurve

_CHUNK = 4096
_WINDOW = 8  # pieces evaluated per value on the fast path (wider brackets take the full scan)
_TABLE_SIZE = 256


@dataclass(frozen=True)
class _Pieces:
    """Piece j covers [left[j], right[j]] with W(b) = a[j] + s[j] b; the last is the flat tail."""

    left: tuple[float, ...]
    right: tuple[float, ...]
    a: tuple[float, ...]
    s: tuple[float, ...]
    grid: tuple[float, ...]  # values at which the optimal piece is tabulated
    best: tuple[int, ...]  # optimal piece per grid value (-1: no positive surplus)
    np_left: np.ndarray
    np_right: np.ndarray
    np_a: np.ndarray
    np_s: np.ndarray
    np_grid: np.ndarray
    np_best: np.ndarray


def _eval(
    v: np.ndarray, lo: np.ndarray, hi: np.ndarray, j: np.ndarray, p: _Pieces
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Best (bid, surplus, piece) per row over candidate pieces `j` (rows x k; -1 = none)."""
    left = np.maximum(p.np_left[j], lo[:, None])
    right = np.minimum(p.np_right[j], hi[:, None])
    a, s = p.np_a[j], p.np_s[j]
    with np.errstate(divide="ignore", invalid="ignore"):
        b = np.where(s > 0.0, 0.5 * v[:, None] - 0.5 * a / s, left)
    b = np.minimum(np.maximum(b, left), right)
    f = np.where((right >= left) & (j >= 0), (v[:, None] - b) * (a + s * b), -np.inf)
    k = np.argmax(f, axis=1)
    rows = np.arange(v.shape[0])
    return b[rows, k], np.where(f[rows, k] > 0.0, f[rows, k], 0.0), j[rows, k]


def _pieces(curve: WinCurve) -> _Pieces:
    """Per-curve shading data, built on first use and kept on the (immutable) curve."""
    cached = curve.__dict__.get("_shading")
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    xs, ys = list(curve.xs), list(curve.ys)
    left = (*xs[:-1], xs[-1])
    right = (*xs[1:], math.inf)
    a = (*curve.intercepts, ys[-1])
    s = (*curve.slopes, 0.0)
    grid = np.geomspace(max(xs[1], 1e-9) * 1e-3, xs[-1] * 1e3, _TABLE_SIZE)
    arr = [np.asarray(t, dtype=np.float64) for t in (left, right, a, s)]
    tmp = _Pieces(left, right, a, s, (), (), *arr, grid, np.zeros(0, dtype=np.int64))
    j_all = np.broadcast_to(np.arange(len(left)), (grid.shape[0], len(left)))
    _, f, j = _eval(grid, np.zeros_like(grid), grid, j_all, tmp)
    best = np.where(f > 0.0, j, -1)
    p = _Pieces(left, right, a, s, tuple(grid.tolist()), tuple(best.tolist()), *arr, grid, best)
    object.__setattr__(curve, "_shading", p)
    return p


def _scan(value: float, lo: float, hi: float, p: _Pieces, j0: int, j1: int) -> tuple[float, float]:
    """Scalar: best (bid, surplus) over pieces j0..j1 within [lo, hi]; surplus 0 if none > 0."""
    best_b, best_f = 0.0, 0.0
    left_, right_, a_, s_ = p.left, p.right, p.a, p.s
    for j in range(j0, j1 + 1):
        left = left_[j] if left_[j] > lo else lo
        right = right_[j] if right_[j] < hi else hi
        if right < left:
            continue
        sj = s_[j]
        b = 0.5 * value - 0.5 * a_[j] / sj if sj > 0.0 else left
        b = left if b < left else (right if b > right else b)
        f = (value - b) * (a_[j] + sj * b)
        if f > best_f:
            best_b, best_f = b, f
    return best_b, best_f


def shade(value: float, curve: WinCurve, floor: float = 0.0, max_bid: float = math.inf) -> float:
    """The surplus-maximising first-price bid, or 0.0 when no bid has positive expected surplus."""
    lo = floor if floor > 0.0 else 0.0
    hi = value if value < max_bid else max_bid
    if not (hi >= lo and value > 0.0):
        return 0.0
    p = _pieces(curve)
    last = len(p.left) - 1
    i = bisect_right(p.grid, value)
    j0 = max(p.best[i - 1] - 1, 0) if i > 0 else 0
    j1 = min(p.best[i] + 1, last) if i < len(p.grid) and p.best[i] >= 0 else last
    b, f = _scan(value, 0.0, value, p, j0, j1)
    if f <= 0.0:
        return 0.0
    if lo <= b <= hi:
        return b
    j0 = max(bisect_right(p.left, lo) - 1, 0)
    j1 = min(bisect_left(p.left, hi), last)
    b, f = _scan(value, lo, hi, p, j0, j1)
    return b if f > 0.0 else 0.0


def shade_array(
    values: np.ndarray,
    curve: WinCurve,
    floor: np.ndarray | float = 0.0,
    max_bid: float = math.inf,
) -> np.ndarray:
    """`shade` for many values at once (same fast path and fallback, in chunks)."""
    v = np.asarray(values, dtype=np.float64)
    n = v.shape[0]
    lo = np.broadcast_to(np.maximum(np.asarray(floor, dtype=np.float64), 0.0), (n,))
    hi = np.minimum(v, max_bid)
    out = np.zeros(n)
    p = _pieces(curve)
    last = p.np_left.shape[0] - 1
    act = np.flatnonzero((hi >= lo) & (v > 0.0))
    va, loa, hia = v[act], lo[act], hi[act]
    i = np.searchsorted(p.np_grid, va, side="right")
    g = p.np_grid.shape[0]
    prev = p.np_best[np.maximum(i - 1, 0)]
    j0 = np.where(i > 0, np.maximum(prev - 1, 0), 0)
    nxt = p.np_best[np.minimum(i, g - 1)]
    j1 = np.where((i < g) & (nxt >= 0), np.minimum(nxt + 1, last), last)
    narrow = (j1 - j0) < _WINDOW
    full = ~narrow
    for start in range(0, act.shape[0], _CHUNK):
        sl = slice(start, start + _CHUNK)
        rows = np.flatnonzero(narrow[sl]) + start
        if rows.size:
            j = j0[rows, None] + np.arange(_WINDOW)
            j = np.where(j <= j1[rows, None], j, -1)
            b, f, _ = _eval(va[rows], np.zeros(rows.size), va[rows], j, p)
            inside = (loa[rows] <= b) & (b <= hia[rows])
            out[act[rows]] = np.where((f > 0.0) & inside, b, 0.0)
            full[rows] = (f > 0.0) & ~inside
    # The floor or max bid excludes the unconstrained optimum: scan the pieces that overlap
    # [lo, hi] (as `shade` does), rows sorted by that count so a chunk pads to similar widths.
    rows = np.flatnonzero(full)
    f0 = np.maximum(np.searchsorted(p.np_left, loa[rows], side="right") - 1, 0)
    f1 = np.minimum(np.searchsorted(p.np_left, hia[rows], side="left"), last)
    order = np.argsort(f1 - f0, kind="stable")
    rows, f0, f1 = rows[order], f0[order], f1[order]
    for start in range(0, rows.size, _CHUNK):
        sl = slice(start, start + _CHUNK)
        r, lo_j, hi_j = rows[sl], f0[sl], f1[sl]
        j = lo_j[:, None] + np.arange(int((hi_j - lo_j).max()) + 1)
        j = np.where(j <= hi_j[:, None], j, -1)
        b, f, _ = _eval(va[r], loa[r], hia[r], j, p)
        out[act[r]] = np.where(f > 0.0, b, 0.0)
    return out


def expected_surplus(bids: np.ndarray, values: np.ndarray, curve: WinCurve) -> np.ndarray:
    """(value - bid) x W(bid): what shading maximises; for reports and tests."""
    b = np.asarray(bids, dtype=np.float64)
    return np.where(b > 0, (np.asarray(values) - b) * curve.probs(b), 0.0)
