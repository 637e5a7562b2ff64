"""RLB's dynamic program: the solver against a brute-force Bellman recursion (max over every
bid) on small cases, the coarse budget grid against the exact DP, and the state mapping."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bidding.rlb import (
    MarketModel,
    Rlb,
    fit_rlb,
    market_from_counts,
    market_from_prices,
    solve_rlb,
    value_atoms,
)


def brute_force(pdf: np.ndarray, theta: np.ndarray, w: np.ndarray, horizon: int, budget: int):
    """V[t][b] and the best bid (largest maximiser) by trying every bid a = 0..b: a bid of a
    beats prices 0..a-1 (ties lose) and is capped by the budget."""
    v = np.zeros((horizon + 1, budget + 1))
    best = np.zeros((horizon + 1, budget + 1, theta.size), dtype=int)
    for t in range(1, horizon + 1):
        for b in range(budget + 1):
            total = 0.0
            for i, th in enumerate(theta):
                outcomes = []
                for a in range(min(b, pdf.size) + 1):
                    k = np.arange(a)
                    won = float(np.sum(pdf[k] * (th + v[t - 1, b - k])))
                    outcomes.append(won + (1.0 - pdf[:a].sum()) * v[t - 1, b])
                outcomes = np.asarray(outcomes)
                top = outcomes.max()
                best[t, b, i] = int(np.flatnonzero(outcomes >= top - 1e-12)[-1])
                total += w[i] * top
            v[t, b] = total
    return v, best


@pytest.mark.parametrize("atoms", [1, 3])
def test_exact_dp_equals_brute_force_values_and_bids(atoms):
    rng = np.random.default_rng(atoms)
    pdf = rng.dirichlet(np.ones(9)) * 0.97  # 3% of the market above the last bin: never won
    market = MarketModel(1.0, pdf)
    theta, w = value_atoms(rng.gamma(2.0, 0.6, 500), atoms)
    horizon, budget = 7, 16
    table = solve_rlb(market, theta, w, horizon, float(budget), grid=None)
    ref, best = brute_force(pdf, theta, w, horizon, budget)
    np.testing.assert_allclose(table.values[:, : budget + 1], ref, rtol=1e-10, atol=1e-12)
    rlb = Rlb(table)
    for t in range(1, horizon + 1):
        for b in range(1, budget + 1):
            for i, th in enumerate(theta.tolist()):
                assert rlb.price_at(th, t, float(b)) == best[t, b, i], (t, b, th)


def test_coarse_grid_tracks_the_exact_dp():
    rng = np.random.default_rng(2)
    market = market_from_prices(np.round(rng.lognormal(math.log(60.0), 0.5, 50_000)))
    values = rng.beta(1.0, 1500.0, 50_000)
    theta, w = value_atoms(values, 1)
    exact = solve_rlb(market, theta, w, 300, 3000.0, grid=None)
    coarse = solve_rlb(market, theta, w, 300, 3000.0, grid=256)
    assert exact.values.shape[1] > 10 * coarse.values.shape[1]
    cells = coarse.values.shape[1]
    on_grid = np.round(np.arange(cells) * coarse.budget_step).astype(int)
    on_grid = on_grid[on_grid < exact.values.shape[1]]
    gap = np.abs(coarse.values[:, : on_grid.size] - exact.values[:, on_grid])
    assert gap.max() <= 0.01 * exact.values[-1, -1]
    e, c = Rlb(exact), Rlb(coarse)
    for t, b in [(300, 3000.0), (150, 1000.0), (20, 400.0), (5, 37.0)]:
        for v in np.quantile(values, [0.1, 0.5, 0.9, 0.99]).tolist():
            assert abs(c.price_at(v, t, b) - e.price_at(v, t, b)) <= 3.0, (t, b, v)


def test_more_auctions_than_solved_map_to_the_same_budget_per_auction():
    rng = np.random.default_rng(3)
    market = market_from_prices(np.round(rng.lognormal(math.log(30.0), 0.6, 20_000)))
    rlb = fit_rlb(rng.beta(1.0, 300.0, 20_000), market, 100, 1000.0)
    for v in (0.001, 0.003, 0.02):
        assert rlb.price_at(v, 400, 4000.0) == rlb.price_at(v, 100, 1000.0)


def test_last_auction_bids_all_it_can_and_never_above_budget_left():
    market = MarketModel(1.0, np.full(50, 0.02))
    rlb = fit_rlb(np.full(10, 0.01), market, 10, 100.0)
    assert rlb.price_at(0.01, 1, 30.0) == 30.0  # V(0, .) = 0: nothing to keep the budget for
    assert rlb.price_at(0.01, 1, 500.0) == 50.0  # every price bin beaten
    assert rlb.price_at(0.0, 5, 30.0) == 0.0
    assert rlb.price_at(0.01, 10, 100.0) < rlb.price_at(0.01, 2, 100.0)


def test_market_models_from_counts_and_prices():
    m = market_from_counts([0, 3, 0, 1, 0, 0])
    np.testing.assert_allclose(m.pdf, np.array([1, 4, 1, 2]) / 8)  # add-one up to price 3
    floats = market_from_prices(np.random.default_rng(0).lognormal(0.0, 1.0, 1000), bins=64)
    assert floats.step > 0 and 0.99 <= floats.pdf.sum() <= 1.0


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: market_from_counts([]), "^market_price_counts:"),
        (lambda: market_from_counts([0, 0]), "^market_price_counts: all zero"),
        (lambda: market_from_prices(np.array([1.0, -2.0])), "^market_price:"),
        (lambda: value_atoms(np.zeros(5), 1), "^values:"),
        (lambda: value_atoms(np.ones(5), 0), "^atoms:"),
        (lambda: MarketModel(0.0, np.ones(2) / 2), "^market model: step"),
        (
            lambda: solve_rlb(MarketModel(1.0, np.ones(2) / 2), np.ones(1), np.ones(1), 0, 5.0),
            "^horizon:",
        ),
        (
            lambda: solve_rlb(MarketModel(1.0, np.ones(2) / 2), np.ones(1), np.ones(1), 5, 0.0),
            "^budget:",
        ),
    ],
)
def test_bad_inputs_name_the_field(call, match):
    with pytest.raises(ValueError, match=match):
        call()
