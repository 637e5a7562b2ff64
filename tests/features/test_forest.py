"""The numba forest gives LightGBM's own numbers: raw scores bit-identical to
`Booster.predict(raw_score=True)`, probabilities within 1e-15, on rows that exercise every
decision rule (categorical bitsets, NaN and zero as missing, default directions)."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pytest

from features.forest import Forest, ForestError

N_FEATURES = 8
CATEGORICAL = [0, 1]  # dense codes, as the feature spec writes them


def _data(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    x = rng.normal(size=(n, N_FEATURES))
    x[:, 0] = rng.integers(0, 40, n)  # up to 40 codes: bitsets over two 32-bit words
    x[:, 1] = rng.integers(0, 6, n)
    x[:, 2] = np.where(rng.random(n) < 0.2, np.nan, x[:, 2])  # NaN seen in training
    x[:, 3] = np.where(rng.random(n) < 0.3, 0.0, x[:, 3])  # many exact zeros
    logit = (
        np.sin(x[:, 0]) + (x[:, 1] == 2) - np.nan_to_num(x[:, 2]) * x[:, 4] + 0.5 * (x[:, 3] == 0)
    )
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(float)
    return x, y


def _booster(params: dict, rounds: int = 60) -> lgb.Booster:
    x, y = _data(np.random.default_rng(0), 5000)
    base = {"verbosity": -1, "num_leaves": 15, "min_data_in_leaf": 20, "seed": 1}
    data = lgb.Dataset(x, label=y, categorical_feature=CATEGORICAL)
    return lgb.train(base | params, data, num_boost_round=rounds)


def _varied_rows(n: int = 10_000) -> np.ndarray:
    """Training-like rows, then every awkward value in every column."""
    rng = np.random.default_rng(42)
    x, _ = _data(rng, n)
    awkward = np.array([np.nan, 0.0, -0.0, 1e-40, -1.0, -7.0, 39.0, 40.0, 63.0, 64.0, 1e9, 0.5])
    mask = rng.random(x.shape) < 0.15
    x[mask] = rng.choice(awkward, size=mask.sum())
    return x


@pytest.mark.parametrize(
    "params",
    [
        {"objective": "binary"},
        {"objective": "binary", "zero_as_missing": True},
        {"objective": "binary", "sigmoid": 0.7, "max_cat_to_onehot": 8},
        {"objective": "regression", "use_missing": False},
    ],
    ids=["binary", "zero-as-missing", "sigmoid-onehot", "regression-no-missing"],
)
def test_forest_matches_booster_predict(params: dict) -> None:
    booster = _booster(params)
    forest = Forest.from_booster(booster)
    x = _varied_rows()
    raw = booster.predict(x, raw_score=True)
    np.testing.assert_array_equal(forest.predict_raw(x), raw)
    np.testing.assert_array_equal(forest.predict_raw(x, threads=2), raw)
    np.testing.assert_allclose(forest.predict(x), booster.predict(x), rtol=0, atol=1e-15)
    assert np.unique(raw).size > 100  # the rows reach many leaves, not one corner


def test_forest_handles_single_leaf_trees_and_refuses_what_it_cannot_score() -> None:
    x, y = _data(np.random.default_rng(1), 200)
    stump = lgb.train(
        {"objective": "binary", "verbosity": -1, "min_data_in_leaf": 1000},
        lgb.Dataset(x, label=y),
        num_boost_round=3,
    )  # no split possible: every tree is one leaf
    np.testing.assert_array_equal(
        Forest.from_booster(stump).predict_raw(x), stump.predict(x, raw_score=True)
    )
    multi = lgb.train(
        {"objective": "multiclass", "num_class": 3, "verbosity": -1},
        lgb.Dataset(x, label=np.arange(200) % 3),
        num_boost_round=2,
    )
    with pytest.raises(ForestError, match="one tree per iteration"):
        Forest.from_booster(multi)
    forest = Forest.from_booster(stump)
    with pytest.raises(ForestError, match=r"shape \(200, 3\), model needs \(n, 8\)"):
        forest.predict_raw(x[:, :3])
