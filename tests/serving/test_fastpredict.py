"""The single-row fast path must give exactly what Booster.predict gives.

It reaches LightGBM through private names (`lightgbm.basic._LIB`, `Booster._handle`); this test
is the guard that pins them: a LightGBM upgrade that changes either fails here.
"""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pytest

from serving.models.fastpredict import FastPredictError, FastPredictor

N_ROWS = 10_000


@pytest.fixture(scope="module")
def booster() -> lgb.Booster:
    """Categorical codes (0 = unseen bucket), numerics with NaN, like the feature spec's output."""
    rng = np.random.default_rng(1)
    n = 20_000
    x = np.column_stack(
        [
            rng.integers(1, 40, n),  # category, codes 1..39
            rng.integers(1, 400, n),  # high-cardinality category
            rng.normal(size=n),
            rng.exponential(size=n),
            rng.integers(0, 24, n),
        ]
    ).astype(np.float64)
    x[rng.random(n) < 0.1, 2] = np.nan
    x[rng.random(n) < 0.05, 0] = np.nan
    logit = 0.8 * x[:, 2] + np.where(x[:, 0] % 5 == 0, 1.2, 0.0) - 0.3 * x[:, 3] - 2.5
    y = (rng.random(n) < 1 / (1 + np.exp(-np.nan_to_num(logit)))).astype(int)
    data = lgb.Dataset(x, y, categorical_feature=[0, 1], free_raw_data=False)
    params = {"objective": "binary", "num_leaves": 63, "verbose": -1, "num_threads": 1}
    trained = lgb.train(params, data, num_boost_round=100)
    return lgb.Booster(model_str=trained.model_to_string())  # as serving loads it: from text


def varied_rows(n: int) -> np.ndarray:
    """Seen and unseen codes, codes never in training, NaNs in every column, extremes."""
    rng = np.random.default_rng(2)
    x = np.column_stack(
        [
            rng.integers(0, 60, n),  # 0 = unseen bucket, 40..59 never seen in training
            rng.integers(0, 1000, n),
            rng.normal(scale=3, size=n),
            rng.exponential(scale=5, size=n),
            rng.integers(0, 24, n),
        ]
    ).astype(np.float64)
    for j in range(x.shape[1]):
        x[rng.random(n) < 0.08, j] = np.nan
    x[:10] = np.nan  # all-missing rows
    x[10:20, 2] = [1e300, -1e300, 0.0, -0.0, 1e-300, 5, -5, 1e6, -1e6, 3.5]
    return x


@pytest.mark.parametrize("raw_score", [False, True])
def test_fast_path_equals_booster_predict(booster: lgb.Booster, raw_score: bool) -> None:
    x = varied_rows(N_ROWS)
    fast = FastPredictor(booster, raw_score=raw_score)
    expected = booster.predict(x, raw_score=raw_score)
    got = np.array([fast.predict_one(row) for row in x.tolist()])
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)
    np.testing.assert_allclose(fast.predict_many(x), expected, rtol=0, atol=1e-9)


def test_wrong_width_is_refused(booster: lgb.Booster) -> None:
    fast = FastPredictor(booster)
    with pytest.raises(FastPredictError, match="row has 3 values, model has 5"):
        fast.predict_one([1.0, 2.0, 3.0])
    with pytest.raises(FastPredictError, match="shape"):
        fast.predict_many(np.zeros((2, 4)))


def test_multiclass_is_refused() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(300, 3)), rng.integers(0, 3, 300)
    params = {"objective": "multiclass", "num_class": 3, "verbose": -1, "num_threads": 1}
    multi = lgb.train(params, lgb.Dataset(x, y), num_boost_round=3)
    with pytest.raises(FastPredictError, match="multiclass"):
        FastPredictor(multi)
