from __future__ import annotations

import numpy as np
import pytest

from bench.ope import dr, estimates, ips, on_policy, snips_value


def test_hand_computed_case() -> None:
    reward = np.array([1.0, 0.0, 1.0])
    pscore = np.array([0.5, 0.5, 0.25])
    pi_logged = np.array([1.0, 0.0, 0.5])
    assert ips(reward, pscore, pi_logged).mean() == pytest.approx((2 + 0 + 2) / 3)
    assert snips_value(reward, pscore, pi_logged) == pytest.approx(4 / 4)
    q_logged = np.array([0.5, 0.1, 0.2])
    pi_all = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    q_all = np.array([[0.5, 0.3], [0.1, 0.4], [0.2, 0.6]])
    terms = dr(reward, pscore, pi_logged, q_logged, pi_all, q_all)
    np.testing.assert_allclose(terms, [0.5 + 2 * 0.5, 0.4 + 0, 0.4 + 2 * 0.8])


def test_unbiased_on_a_simulated_uniform_log() -> None:
    rng = np.random.default_rng(0)
    n, k = 200_000, 4
    true_ctr = np.array([0.01, 0.02, 0.05, 0.03])
    a = rng.integers(0, k, n)
    r = (rng.random(n) < true_ctr[a]).astype(float)
    pi_all = np.tile([0.0, 0.0, 1.0, 0.0], (n, 1))  # always the best arm
    q_all = np.tile(true_ctr * 0.5, (n, 1))  # a deliberately wrong reward model
    res = {
        e.name: e
        for e in estimates(
            r,
            np.full(n, 1 / k),
            pi_all[np.arange(n), a],
            q_all[np.arange(n), a],
            pi_all,
            q_all,
            n_boot=200,
        )
    }
    for name in ("ips", "snips", "dr"):
        assert res[name].low < 0.05 < res[name].high
        assert res[name].value == pytest.approx(0.05, rel=0.1)
    logged = on_policy(r, n_boot=200)
    assert logged.low < true_ctr.mean() < logged.high


def test_bad_propensity_is_refused() -> None:
    with pytest.raises(ValueError, match="pscore"):
        ips(np.ones(2), np.array([0.5, 0.0]), np.ones(2))
    with pytest.raises(ValueError, match="one value per logged impression"):
        ips(np.ones(2), np.ones(3), np.ones(2))
