"""Issue 16's "must show": RLB against tuned linear bidding on the RLB benchmark's episodes.

Eight iPinYou campaigns in han-cai/rlb-dp's format (../shared/data/ipinyou_rlb_episodes): fit on
episodes 1-50 and the campaign's training figures, replay episodes 51-100, c0 in {1/32, 1/16,
1/8}, budget per episode c0 x CPM_train / 1000 x 1000, second price, bids capped by the budget
left, leftover lost at each episode's end. Every strategy goes through `bidding.grid.replay_grid`,
the code `bidopt simulate --episode-column episode --train-info ...` runs: linear's (and
constant's) base bid is tuned on episodes 1-50 over a grid under the same rules, ORTB's and the
Lagrangian's lambda solved on them, rlb's table solved on the training market-price histogram
(coarse budget grid). Goal max_clicks. Clicks are small numbers, so expected clicks (the shipped
pCTR summed over the wins) are printed too.

Also: rlb with the exact DP at 1/8 (what the coarse grid costs in clicks); the DP solve time for
T = 1,000 at the largest budget of the run (bar: <= 5 s) against the exact DP, and at c0 = 1/2
(tens of thousands of price units); a bid from a solved table (bar: <= 2 us) against linear's
bid through the same `bid_one`.

    python bench/rlb_episodes.py [--campaigns 1458,3386] [--strategies linear,rlb]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

from bidding.episodes import episode_bounds, episode_budgets, replay_episodes
from bidding.goals import goal_value
from bidding.grid import replay_grid
from bidding.replay import make_log
from bidding.rlb import Rlb, fit_rlb, market_from_counts, solve_rlb, value_atoms
from bidding.strategies import Linear, bid_one
from features.adapters.rlb_episodes import read_train_info

SHARED = Path(
    os.environ.get(
        "BIDOPT_SHARED_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
    )
)
DATA = SHARED / "ipinyou_rlb_episodes"
CAMPAIGNS = ("1458", "2259", "2261", "2821", "3358", "3386", "3427", "3476")
STRATEGIES = ("linear", "rlb", "lagrangian", "ortb1", "ortb2", "constant")
FRACTIONS = ("1/32", "1/16", "1/8")
T = 1000
GOAL = goal_value("max_clicks", None)


def load(campaign: str):
    df = pl.read_csv(DATA / f"{campaign}.episodes.tsv.gz", separator="\t")
    info = read_train_info(DATA / f"{campaign}.train-info.json")

    def log(part: pl.DataFrame):
        p = part["pctr"].to_numpy()
        return make_log(
            pctr=p, market_price=part["market_price"].to_numpy(), click=part["click"].to_numpy(),
            expected_click=p,
        )  # fmt: skip

    fit, rep = df.filter(pl.col("episode") <= 50), df.filter(pl.col("episode") > 50)
    return log(fit), fit["episode"].to_numpy(), log(rep), rep["episode"].to_numpy(), info


def replay_campaigns(campaigns, strategies):
    results = {}  # (campaign, fraction, strategy) -> (clicks, expected, spend share)
    for c in campaigns:
        t0 = time.perf_counter()
        fit, fit_ids, rep, rep_ids, info = load(c)
        rows = replay_grid(
            fit, rep, strategies, FRACTIONS, GOAL, fit_episodes=fit_ids,
            replay_episodes_ids=rep_ids, price_per_auction=info.mean_price,
            market_model=market_from_counts(info.market_price_counts),
        )  # fmt: skip
        for name, frac, _, res in rows:
            results[c, frac, name] = (res.clicks, res.expected_clicks, res.spend_share)
        # the exact DP at 1/8 (the coarsest grid of the run), same replay: what the grid gives up
        budget = info.mean_price * T / 8
        exact = fit_rlb(
            fit.pctr, market_from_counts(info.market_price_counts), T, budget, grid=None
        )
        bounds = episode_bounds(len(rep), ids=rep_ids)
        r = replay_episodes(rep, exact, episode_budgets(bounds, budget / T), bounds, GOAL)
        results[c, 1 / 8, "rlb-exact"] = (r.clicks, r.expected_clicks, r.spend_share)
        print(f"  {c}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    return results


def print_tables(results, campaigns, strategies) -> bool:
    fracs = [1 / 32, 1 / 16, 1 / 8]
    names = list(strategies)
    print("clicks (expected clicks = shipped pCTR summed over the wins) [spend share]")
    for frac in fracs:
        print(f"\n== c0 = 1/{round(1 / frac)}")
        cols = [*names, "rlb-exact"] if frac == 1 / 8 else names
        print(f"{'campaign':<9}" + "".join(f"{n:>22}" for n in cols))
        sums = {n: [0.0, 0.0] for n in cols}
        for c in campaigns:
            cells = []
            for n in cols:
                clicks, exp, share = results[c, frac, n]
                sums[n][0] += clicks
                sums[n][1] += exp
                cells.append(f"{clicks:>5.0f} ({exp:6.1f}) [{share:4.0%}]")
            print(f"{c:<9}" + "".join(f"{x:>22}" for x in cells))
        print(
            f"{'sum':<9}" + "".join(f"{sums[n][0]:>5.0f} ({sums[n][1]:6.1f})       " for n in cols)
        )
        results["sum", frac] = sums
    ok = True
    if "rlb" in names and "linear" in names:
        print("\nrlb / linear, summed over the campaigns (bars: >= 1.08 at 1/32, >= 1 at every c0)")
        for frac in fracs:
            s = results["sum", frac]
            ratio = s["rlb"][0] / s["linear"][0] if s["linear"][0] else float("nan")
            eratio = s["rlb"][1] / s["linear"][1]
            bar = 1.08 if frac == 1 / 32 else 1.0
            passed = ratio >= bar
            ok &= passed
            print(
                f"  1/{round(1 / frac):<3} clicks {s['rlb'][0]:.0f} / {s['linear'][0]:.0f} = "
                f"{ratio:.3f} ({'PASS' if passed else 'FAIL'} >= {bar}); expected clicks "
                f"{s['rlb'][1]:.1f} / {s['linear'][1]:.1f} = {eratio:.3f}"
            )
        print("  reference (issue, linear tuned on 1-50): 90 / 118 / 178 clicks")
    return ok


def dp_speed(campaigns) -> bool:
    infos = {c: read_train_info(DATA / f"{c}.train-info.json") for c in campaigns}
    c = max(infos, key=lambda k: infos[k].mean_price)
    info = infos[c]
    fit, *_ = load(c)
    market = market_from_counts(info.market_price_counts)
    theta, w = value_atoms(fit.pctr, 1)
    solve_rlb(market, theta, w, 5, 50.0)  # compile (or load the cache) outside the timing
    budget = info.mean_price * T / 8
    t0 = time.perf_counter()
    coarse = solve_rlb(market, theta, w, T, budget)
    t_coarse = time.perf_counter() - t0
    t0 = time.perf_counter()
    solve_rlb(market, theta, w, T, budget, grid=None)
    t_exact = time.perf_counter() - t0
    big = info.mean_price * T / 2
    t0 = time.perf_counter()
    solve_rlb(market, theta, w, T, big)
    t_big = time.perf_counter() - t0
    print(
        f"\nDP solve, T = {T}, campaign {c}: largest budget of the run (1/8) {budget:,.0f}: "
        f"{t_coarse:.2f} s on a {coarse.values.shape[1]}-point grid "
        f"({'PASS' if t_coarse <= 5 else 'FAIL'} <= 5 s); exact DP ({budget:,.0f} points) "
        f"{t_exact:.2f} s (ratio {t_coarse / t_exact:.2f}); at c0 = 1/2 ({big:,.0f}): "
        f"{t_big:.2f} s"
    )
    _, _, rep, _, _ = load(c)
    return t_coarse <= 5 and bid_speed(Rlb(coarse), rep, budget)


def episode_states(rlb: Rlb, log, budget: float) -> tuple[list, list, list]:
    """(value, auctions left, budget left) of every auction a replay of these episodes meets:
    the states a live bidder walks through, in order."""
    v, t, b = [], [], []
    price, pctr = log.market_price.tolist(), log.pctr.tolist()
    for start in range(0, len(pctr) - T + 1, T):
        left = budget
        for i in range(start, start + T):
            v.append(pctr[i])
            t.append(start + T - i)
            b.append(left)
            if rlb.price_at(pctr[i], start + T - i, left) > price[i]:
                left -= price[i]
    return v, t, b


def bid_speed(rlb: Rlb, log, budget: float) -> bool:
    """us per bid over the states of a replay (in order), and over random states (cache-cold:
    any row of the table); baseline: linear's bid through the same bid_one."""
    walk = episode_states(rlb, log, budget)
    rng = np.random.default_rng(0)
    n = len(walk[0])
    rand = (
        rng.choice(log.pctr, n).tolist(),
        rng.integers(1, T + 1, n).tolist(),
        (rng.random(n) * budget).tolist(),
    )
    lin = Linear(50.0, float(log.pctr.mean()))

    def run(strategy, states) -> float:
        v, t, b = states
        best = float("inf")
        for _ in range(5):
            t0 = time.perf_counter()
            for x, z, y in zip(v, t, b, strict=True):
                bid_one(strategy, x, budget_left=y, auctions_left=z)
            best = min(best, time.perf_counter() - t0)
        return best / n * 1e6

    base = run(lin, walk)
    full = run(rlb, walk)
    cold = run(rlb, rand)
    print(
        f"bid through bid_one, {n:,} states of the replay in order: rlb {full:.2f} us "
        f"({'PASS' if full <= 2 else 'FAIL'} <= 2 us), baseline linear {base:.2f} us "
        f"(rlb / linear {full / base:.2f}x); random states (cache-cold table rows): {cold:.2f} us"
    )
    return full <= 2


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--campaigns", default=",".join(CAMPAIGNS))
    ap.add_argument("--strategies", default=",".join(STRATEGIES))
    args = ap.parse_args()
    if not DATA.is_dir():
        print(f"skipped: {DATA} not found (the RLB episodes are in ../shared/data)")
        return 0
    campaigns = [c.strip() for c in args.campaigns.split(",") if c.strip()]
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    t0 = time.perf_counter()
    results = replay_campaigns(campaigns, strategies)
    ok = print_tables(results, campaigns, strategies)
    ok &= dp_speed(campaigns)
    print(f"\n{time.perf_counter() - t0:.0f} s in all; {'all bars met' if ok else 'BAR MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
