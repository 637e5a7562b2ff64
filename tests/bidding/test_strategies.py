"""Formulas and the registry; the shared constraints are in test_strategy_contract.py."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bidding.fitting import win_function
from bidding.strategies import (
    STRATEGY_NAMES,
    Constant,
    Linear,
    Ortb1,
    Ortb2,
    RandomBid,
    make_strategy,
    strategy_from_dict,
    strategy_name,
    strategy_params,
    strategy_to_dict,
)


@pytest.mark.parametrize("cls", [Ortb1, Ortb2])
@pytest.mark.parametrize("theta", [0.5, 5.0, 50.0])
def test_ortb_bids_maximise_theta_w_minus_lambda_cost(cls, theta):
    """The KDD 2014 objective per impression: theta w(b) - lambda b w(b)."""
    c, lam = 40.0, 0.05
    b = np.linspace(0.0, 2000.0, 400_001)
    w = win_function(cls.name, c, b)
    best = b[np.argmax(theta * w - lam * b * w)]
    assert cls(c, lam).price(theta) == pytest.approx(best, abs=0.01)


def test_linear_is_base_bid_times_relative_value():
    assert Linear(base_bid=30.0, avg_value=2.0).price(3.0) == pytest.approx(45.0)


def test_registry_names_aliases_and_params():
    assert STRATEGY_NAMES == (
        "constant", "random", "linear", "value", "ortb1", "ortb2", "lagrangian", "rlb",
    )  # fmt: skip
    with pytest.raises(ValueError, match=r"^rlb: solved from a market-price model"):
        make_strategy("rlb")
    assert strategy_name("lin") == "linear"
    assert strategy_params("ortb2") == ("c", "lam")
    assert strategy_params("random") == ("low", "high", "seed")
    assert make_strategy("const", bid=3) == Constant(3.0)
    with pytest.raises(ValueError, match=r"^strategy: unknown strategy 'x' \(known: constant"):
        strategy_name("x")
    with pytest.raises(ValueError, match=r"^ortb1: missing parameter\(s\) lam"):
        make_strategy("ortb1", c=1.0)
    with pytest.raises(ValueError, match=r"^ortb1: unknown parameter\(s\) k"):
        make_strategy("ortb1", c=1.0, lam=1.0, k=2.0)
    with pytest.raises(ValueError, match=r"^ortb1: c must be a finite number > 0"):
        make_strategy("ortb1", c=0.0, lam=1.0)
    with pytest.raises(ValueError, match=r"^constant: bid must be a number"):
        make_strategy("constant", bid="high")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^random: high must be"):
        RandomBid(5.0, 1.0)


@pytest.mark.parametrize(
    "strategy",
    [
        make_strategy(n, **p)
        for n, p in [
            ("constant", {"bid": 2.0}),
            ("random", {"low": 0.0, "high": 3.0, "seed": 7}),
            ("linear", {"base_bid": 1.0, "avg_value": 2.0}),
            ("value", {}),
            ("ortb1", {"c": 1.0, "lam": 2.0}),
            ("ortb2", {"c": 1.0, "lam": 2.0}),
            ("lagrangian", {"lam": 0.5}),
        ]
    ],
    ids=lambda s: s.name,
)
def test_json_round_trip(strategy):
    d = json.loads(json.dumps(strategy_to_dict(strategy)))
    assert d["name"] == strategy.name
    assert strategy_from_dict(d) == strategy
