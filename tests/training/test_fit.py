"""LightGBM fitting: categoricals from the spec, early stopping, trimmed forest."""

from __future__ import annotations

import numpy as np

from features.batch import encode_matrix
from features.spec_fit import fit_spec
from tests.helpers.training import fast_config
from training.fit import booster_params, fit_booster
from training.splits import LABEL, make_split


def test_fit_uses_spec_categoricals_and_trims(small_logs):
    split, _ = make_split(small_logs, "ctr")
    spec = fit_spec(split.train)
    cfg = fast_config("ctr", "num_boost_round=200", "early_stopping_rounds=5", "learning_rate=0.3")
    x_tr, x_va = encode_matrix(split.train, spec), encode_matrix(split.valid, spec)
    y_tr, y_va = split.train[LABEL].to_numpy(), split.valid[LABEL].to_numpy()
    seen: list[int] = []
    fit = fit_booster(x_tr, y_tr, x_va, y_va, spec, cfg.lightgbm, lambda d, t: seen.append(d))
    assert fit.booster.num_trees() == fit.best_iteration
    assert fit.best_iteration < len(seen) <= 200  # stopped early, and reported each round
    assert fit.valid_logloss[fit.best_iteration - 1] == min(fit.valid_logloss)
    model = fit.booster.dump_model()
    cat_idx = {spec.names.index(c) for c in spec.categorical}
    split_cats = {
        t["tree_structure"].get("split_feature")
        for t in model["tree_info"]
        if t["tree_structure"].get("decision_type") == "=="
    }
    assert split_cats <= cat_idx
    p = fit.booster.predict(encode_matrix(split.test, spec))
    assert np.all((p > 0) & (p < 1))


def test_booster_params_are_binary_and_drop_train_keys():
    params = booster_params(fast_config("ctr").lightgbm)
    assert params["objective"] == "binary"
    assert "num_boost_round" not in params and "early_stopping_rounds" not in params
    assert params["min_data_per_group"] == 500


def test_valid_predictions_are_the_trimmed_boosters(small_logs):
    """The validation scores kept from training (no second pass) are what the stored forest
    predicts on those rows, whether training stopped early or ran all its rounds."""
    split, _ = make_split(small_logs, "ctr")
    spec = fit_spec(split.train)
    x_tr, x_va = encode_matrix(split.train, spec), encode_matrix(split.valid, spec)
    y_tr, y_va = split.train[LABEL].to_numpy(), split.valid[LABEL].to_numpy()
    best = []
    for extra in (("early_stopping_rounds=5", "learning_rate=0.5"), ("early_stopping_rounds=0",)):
        cfg = fast_config("ctr", "num_boost_round=40", *extra)
        fit = fit_booster(x_tr, y_tr, x_va, y_va, spec, cfg.lightgbm)
        assert fit.valid_pred.shape == (x_va.shape[0],)
        np.testing.assert_allclose(fit.valid_pred, fit.booster.predict(x_va), rtol=0, atol=1e-12)
        best.append(fit.best_iteration)
    assert best[0] < 40 == best[1]  # stopped early; then used every round
