from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest

from bidding.creatives import choose, epsilon_greedy_probs


def test_greedy_picks_the_best_with_certainty() -> None:
    assert choose([1.0, 3.0, 2.0]) == choose([1.0, 3.0, 2.0], exploration="greedy")
    c = choose([1.0, 3.0, 2.0])
    assert (c.index, c.propensity) == (1, 1.0)
    assert choose([2.0, 2.0]).index == 0  # ties: first listed


def test_epsilon_greedy_propensities_match_frequencies() -> None:
    rng = random.Random(1)
    values = [1.0, 5.0, 2.0, 0.5]
    picks = [choose(values, exploration="epsilon", epsilon=0.2, rng=rng) for _ in range(40_000)]
    freq = Counter(p.index for p in picks)
    for p in picks[:50]:
        assert freq[p.index] / len(picks) == pytest.approx(p.propensity, abs=0.01)
    expected = epsilon_greedy_probs(np.array(values), 0.2)[0]
    np.testing.assert_allclose(expected, [0.05, 0.85, 0.05, 0.05])


def test_thompson_prefers_the_better_creative_and_reports_a_propensity() -> None:
    rng = random.Random(2)
    picks = [
        choose([1.0, 1.2], exploration="thompson", pctrs=[0.01, 0.012], rng=rng) for _ in range(300)
    ]
    share = sum(p.index == 1 for p in picks) / len(picks)
    assert 0.5 < share < 1.0
    assert all(0 < p.propensity <= 1 for p in picks)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"values": []}, "no creatives"),
        ({"values": [1.0, 2.0], "exploration": "epsilon", "epsilon": 1.5}, "epsilon"),
        ({"values": [1.0, 2.0], "exploration": "thompson"}, "one pctr per creative"),
        ({"values": [1.0, 2.0], "exploration": "ucb"}, "unknown exploration"),
    ],
)
def test_bad_input(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        choose(**kwargs)
