"""LightGBM fitting for pCTR / pCVR on the spec-encoded matrix.

Categorical features are passed as LightGBM categoricals (dense codes from the feature spec), so
the forest splits on sets of publishers or creatives instead of on arbitrary code order; with
`min_data_per_group` and `cat_smooth` rare values cannot get their own branch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np

from features.spec import FeatureSpec
from training.trainset import BatchDataset

# Keys of the [lightgbm] config table that steer lgb.train rather than the booster.
TRAIN_KEYS = ("num_boost_round", "early_stopping_rounds")


@dataclass(frozen=True)
class FitResult:
    booster: lgb.Booster  # trimmed to the best iteration
    best_iteration: int
    valid_logloss: list[float] = field(default_factory=list)
    seconds: float = 0.0  # boosting, validation and the trim; not the Dataset's construction
    build_seconds: float = 0.0  # LightGBM's binned Dataset (for a Sequence: its encoding too)
    # the booster's output (probability) on the validation rows, as LightGBM scored them
    valid_pred: np.ndarray = field(default_factory=lambda: np.empty(0))


def _final_valid_pred(booster: lgb.Booster) -> np.ndarray:
    """LightGBM's own scores of the validation rows after the last round (a copy).

    LightGBM updates them tree by tree to evaluate each round; a custom eval function is the
    public way to read them (it reports no metric here). Asking every round costs more than it
    saves (LightGBM converts all of them each time), so this is called once, after training.
    """
    seen: list[np.ndarray] = []

    def tap(preds: np.ndarray, data: lgb.Dataset) -> list[tuple[str, float, bool]]:
        seen.append(np.array(preds, dtype=np.float64))
        return []

    booster.eval_valid(feval=tap)
    return seen[0]


def best_valid_pred(
    booster: lgb.Booster, best: int, x_valid: np.ndarray, sigmoid: float = 1.0
) -> np.ndarray:
    """The probabilities of the first `best` iterations on the validation rows, without
    predicting every tree again: the last round's scores, less the trees after `best`.

    After early stopping that is the patience rounds only (e.g. 50 of 400 trees), so the
    validation rows are walked through an eighth of the forest instead of all of it. The
    subtraction works on the raw score (the logit over LightGBM's `sigmoid` parameter); the
    result agrees with `predict` to ~1e-15.
    """
    final = _final_valid_pred(booster)
    extra = booster.current_iteration() - best
    if extra == 0:
        return final
    with np.errstate(divide="ignore"):
        raw = (np.log(final) - np.log1p(-final)) / sigmoid
    if not np.all(np.isfinite(raw)):  # a saturated probability: its logit is lost
        return booster.predict(x_valid, num_iteration=best)
    raw -= booster.predict(x_valid, raw_score=True, start_iteration=best, num_iteration=extra)
    return 1.0 / (1.0 + np.exp(-sigmoid * raw))


def booster_params(config: Mapping[str, Any]) -> dict[str, Any]:
    """The booster's parameters: the config table minus the lgb.train arguments."""
    params = {k: v for k, v in config.items() if k not in TRAIN_KEYS}
    params |= {
        "objective": "binary",
        "metric": "binary_logloss",
        "verbosity": -1,
        "force_col_wise": True,  # skips LightGBM's row/col-wise timing test on every fit
    }
    return params


def fit_booster(
    x_train: np.ndarray | Sequence[lgb.Sequence],
    y_train: np.ndarray,
    x_valid: np.ndarray,
    y_valid: np.ndarray,
    spec: FeatureSpec,
    config: Mapping[str, Any],
    on_iteration: Callable[[int, int], None] | None = None,
    *,
    weight: np.ndarray | None = None,
    on_built: Callable[[], None] | None = None,
) -> FitResult:
    """Train with early stopping on the validation window and keep only the trees used.

    The returned booster is rebuilt from the text of its first `best_iteration` trees: that text
    is what the bundle stores, so in-process and served predictions come from the same forest.
    `on_iteration(done, total)` lets the CLI drive a progress bar. `weight` weighs the
    training rows (pCVR's delayed-feedback EM duplicates open clicks with weights q and 1 - q).
    `x_train` is a matrix, or the training rows as `lightgbm.Sequence` parts
    (`training.trainset`), from which LightGBM builds its binned Dataset without the matrix;
    `on_built` is then called once that Dataset is built.
    """
    in_memory = isinstance(x_train, np.ndarray)
    rows = x_train.shape[0] if in_memory else sum(len(s) for s in x_train)
    if rows == 0 or x_valid.shape[0] == 0:
        raise ValueError("cannot fit on an empty training or validation window")
    if in_memory and x_train.shape[1] != len(spec.names):
        raise ValueError(f"matrix has {x_train.shape[1]} columns, spec has {len(spec.names)}")
    if rows != len(y_train):
        raise ValueError(f"{rows} training rows, {len(y_train)} labels")
    params = booster_params(config)
    rounds = int(config.get("num_boost_round", 1000))
    stopping = int(config.get("early_stopping_rounds", 50))
    names, cats = spec.names, spec.categorical
    dataset = lgb.Dataset if in_memory else BatchDataset
    train_set = dataset(
        x_train if in_memory else list(x_train),
        label=y_train,
        weight=weight,
        feature_name=names,
        categorical_feature=cats,
        free_raw_data=True,
        params=params,
    )
    built = time.perf_counter()
    train_set.construct()  # built now, so that the batches' encoding can be let go of
    if on_built is not None:
        on_built()
    build_seconds = time.perf_counter() - built
    valid_set = lgb.Dataset(
        x_valid, label=y_valid, reference=train_set, feature_name=names, categorical_feature=cats
    )
    record: dict[str, Any] = {}
    callbacks: list[Callable[..., Any]] = [lgb.record_evaluation(record)]
    if stopping > 0:
        callbacks.append(lgb.early_stopping(stopping, first_metric_only=True, verbose=False))
    if on_iteration is not None:

        def _progress(env: lgb.callback.CallbackEnv) -> None:
            on_iteration(env.iteration + 1, env.end_iteration)

        callbacks.append(_progress)
    start = time.perf_counter()
    booster = lgb.train(
        params,
        train_set,
        num_boost_round=rounds,
        valid_sets=[valid_set],
        valid_names=["valid"],
        callbacks=callbacks,
        keep_training_booster=True,  # keeps the validation scores; cut to `best` below anyway
    )
    best = booster.best_iteration if booster.best_iteration > 0 else booster.current_iteration()
    trimmed = lgb.Booster(model_str=booster.model_to_string(num_iteration=best))
    valid_pred = best_valid_pred(booster, best, x_valid, float(params.get("sigmoid", 1.0)))
    seconds = time.perf_counter() - start
    valid_curve = [float(v) for v in record.get("valid", {}).get("binary_logloss", [])]
    return FitResult(
        booster=trimmed,
        best_iteration=best,
        valid_logloss=valid_curve,
        seconds=seconds,
        build_seconds=build_seconds,
        valid_pred=valid_pred,
    )


def feature_importance(booster: lgb.Booster) -> dict[str, float]:
    """Total gain per feature: which inputs the forest actually leans on."""
    gains = booster.feature_importance(importance_type="gain")
    return {n: float(g) for n, g in zip(booster.feature_name(), gains, strict=True)}
