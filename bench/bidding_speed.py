"""Bidding speed and quality figures, each against a reference measured in the same run.

    .venv/bin/python bench/bidding_speed.py [--auctions 1000000]

1. Replay: one million auctions per strategy and budget fraction, wall time against np.cumsum
   over the same million prices (the floor of any vectorised replay); bar: <= 2 s each.
2. Per-impression (serving) path: bid_one, win_prob_one and shade in microseconds, against an
   empty Python function call.
3. Pacing: a simulated day with shaped traffic; spend within [95% budget, budget + one bid]
   and the budget not exhausted before 90% of the day.
4. First-price shading on synthetic first-price auctions: realised surplus against truthful
   bidding and a fixed 20% shade.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bidding.fitting import fit_strategy
from bidding.goals import goal_value
from bidding.pacing import PidGains
from bidding.replay import replay, replay_paced, window_budget
from bidding.shading import shade, shade_array
from bidding.strategies import STRATEGY_NAMES, Lagrangian, bid_one
from bidding.winrate import WinRateModel

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the shared test harnesses

from tests.helpers.auctions import synthetic_auctions
from tests.helpers.pacing_day import simulate_day

FRACTIONS = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1 / 2)
BAR_S = 2.0


def best_of(fn: Callable[[], object], repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def per_call_us(fn: Callable[[], object], n: int = 20_000) -> float:
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n * 1e6


def bench_replay(n: int) -> bool:
    goal = goal_value("cpc", 100.0)
    data = synthetic_auctions(n, seed=1)
    fit = synthetic_auctions(200_000, seed=2).log
    fit_values = goal.values(fit.pctr)
    log = data.log
    base = best_of(lambda: np.cumsum(log.market_price))
    print(f"\n== replay of {n:,} auctions (baseline np.cumsum over them: {base * 1e3:.2f} ms)")
    print(f"{'strategy':<11} {'budget':>6} {'seconds':>8} {'x cumsum':>9} {'clicks':>7}  bar")
    ok = True
    for name in STRATEGY_NAMES:
        for frac in FRACTIONS:
            strat = fit_strategy(
                name, fit_values, fit.market_price, fit.click, window_budget(fit, frac)
            )
            budget = window_budget(log, frac)
            res = replay(log, strat, budget, goal)
            secs = best_of(lambda s=strat, b=budget: replay(log, s, b, goal), repeat=2)
            ok &= secs <= BAR_S
            mark = "ok" if secs <= BAR_S else "FAIL"
            print(
                f"{name:<11} 1/{round(1 / frac):<4} {secs:8.3f} {secs / base:9.0f} "
                f"{res.clicks:7.0f}  {mark}"
            )
    # the heavier modes, once each
    lag = Lagrangian(2.0)
    budget = window_budget(log, 1 / 8)
    secs = best_of(lambda: replay(log, lag, budget, goal, episode_length=1000), repeat=2)
    ok &= secs <= BAR_S
    print(f"episodes of 1000 (lagrangian, 1/8): {secs:.3f} s ({secs / base:.0f}x cumsum)")
    secs = best_of(lambda: replay_paced(log, lag, budget, goal, interval=900.0), repeat=1)
    print(f"paced, 15-min control intervals (lagrangian, 1/8): {secs:.3f} s ({secs / base:.0f}x)")
    first = synthetic_auctions(n, seed=3, first_price_share=0.5)
    rng = np.random.default_rng(4)
    hist_bid = first.log.market_price * np.exp(rng.normal(0.0, 0.5, n))
    won = hist_bid > first.log.market_price
    model = WinRateModel().fit(
        hist_bid, won, np.where(won, first.log.market_price, np.nan), np.full(n, "second"),
        segment=first.log.segment,
    )  # fmt: skip
    secs = best_of(lambda: replay(first.log, lag, budget, goal, win_model=model), repeat=1)
    ok &= secs <= BAR_S
    print(
        f"half first-price, shaded per segment (lagrangian, 1/8): {secs:.3f} s ({secs / base:.0f}x)"
    )
    return ok


def bench_scalar() -> None:
    rng = np.random.default_rng(0)
    n = 50_000
    m = rng.lognormal(math.log(50.0), 0.6, n)
    b = rng.lognormal(math.log(50.0), 0.6, n)
    won = b > m
    model = WinRateModel().fit(b, won, np.where(won, m, np.nan), np.full(n, "second"))
    curve = model.curve("web")
    goal = goal_value("cpc", 0.8)
    strat = Lagrangian(0.3)

    def empty() -> None:
        return None

    base = per_call_us(empty)
    rows = {
        "goal value": per_call_us(lambda: goal.value(0.01)),
        "bid_one (second price)": per_call_us(lambda: bid_one(strat, 8.0, floor=1.0, max_bid=20.0)),
        "win_prob_one": per_call_us(lambda: model.win_prob_one(47.0, "web")),
        "shade": per_call_us(lambda: shade(60.0, curve, 1.0, 100.0)),
        "bid_one (first price, shaded)": per_call_us(
            lambda: bid_one(strat, 80.0, floor=1.0, max_bid=100.0, curve=curve)
        ),
    }
    print(f"\n== per impression (serving path); empty Python call: {base:.3f} us")
    for k, v in rows.items():
        print(f"{k:<30} {v:7.2f} us  ({v / base:5.0f}x empty call)")


def bench_pacing() -> bool:
    print("\n== pacing: simulated day, shaped traffic (hourly traffic 20% off its expected shape)")
    ok = True
    for overspend in (4.0, 2.0, 1.2, 0.5):
        day = simulate_day(overspend=overspend, seed=0)
        frozen = simulate_day(overspend=overspend, seed=0, gains=_no_control())
        good = 0.95 * day.budget <= day.spend <= day.budget + day.max_bid_seen and (
            day.exhausted_share is None or day.exhausted_share >= 0.9
        )
        ok &= good
        ex = "never" if day.exhausted_share is None else f"{day.exhausted_share:.1%} of day"
        fex = "never" if frozen.exhausted_share is None else f"{frozen.exhausted_share:.1%}"
        print(
            f"unpaced spend {overspend:>3}x budget: paced spend {day.spend_share:.2%} of budget, "
            f"exhausted {ex}; unpaced: spend {frozen.spend_share:.0%}, exhausted {fex}  "
            f"{'ok' if good else 'FAIL'}"
        )
    return ok


def _no_control() -> PidGains:
    return PidGains(kp=0.0, ki=0.0)


def bench_shading() -> bool:
    rng = np.random.default_rng(11)
    n = 20_000
    market = rng.lognormal(math.log(40.0), 0.5, n)
    bid = rng.lognormal(math.log(40.0), 0.7, n)
    won = bid > market
    model = WinRateModel().fit(bid, won, np.where(won, bid, np.nan), np.full(n, "first"))
    curve = model.curve()
    m = 200_000
    value = rng.lognormal(math.log(55.0), 0.5, m)
    market = rng.lognormal(math.log(40.0), 0.5, m)

    def surplus(bids: np.ndarray) -> float:
        return float(np.sum(np.where(bids > market, value - bids, 0.0)))

    shaded, truthful, fixed = (
        surplus(shade_array(value, curve)),
        surplus(value),
        surplus(0.8 * value),
    )
    print(
        f"\n== first-price shading, {m:,} auctions (win curve from {n:,} censored first-price logs)"
    )
    print(f"surplus: shaded {shaded:,.0f}  truthful {truthful:,.0f}  fixed 20% shade {fixed:,.0f}")
    print(f"shaded / fixed 20% = {shaded / fixed:.2f}")
    return shaded > truthful and shaded > fixed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--auctions", type=int, default=1_000_000)
    args = ap.parse_args()
    ok = bench_replay(args.auctions)
    bench_scalar()
    ok &= bench_pacing()
    ok &= bench_shading()
    print("\nall bars met" if ok else "\nSOME BARS MISSED")


if __name__ == "__main__":
    main()
