"""Off-policy evaluation of learned creative selection on the Open Bandit sample.

The selection policy (epsilon-greedy over a LightGBM click model) is learned on the Thompson
sampling log (bts) and evaluated on the uniform-random log, whose propensities are known exactly:
IPS, self-normalised IPS, and doubly robust with a LightGBM reward model cross-fitted on two
folds of the evaluation log (each half scored by the model fitted on the other half). The logged
(random) policy's own click rate, with the same bootstrap interval, is the baseline.
"""

from __future__ import annotations

import sys
from pathlib import Path

import lightgbm as lgb
import numpy as np
import polars as pl

from bidding.creatives import epsilon_greedy_probs

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.ope import estimates, on_policy

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "open_bandit_sample"
N_ITEMS = 80
EPSILON = 0.1
PARAMS = {
    "objective": "binary",
    "learning_rate": 0.05,
    "num_leaves": 7,
    "min_data_in_leaf": 50,
    "lambda_l2": 10.0,
    "verbose": -1,
    "num_threads": 2,
    "seed": 0,
}


def _load(policy: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    logs = pl.read_csv(DATA / f"{policy}_all.csv.gz").drop("")
    items = pl.read_csv(DATA / f"{policy}_item_context.csv").drop("")
    return logs, items


def _codes(values: pl.Series, vocab: dict[str, int]) -> np.ndarray:
    return np.array([vocab.get(v, 0) for v in values.to_list()], dtype=np.float64)


def _design(
    logs: pl.DataFrame, items: pl.DataFrame, item_ids: np.ndarray, vocab: dict
) -> np.ndarray:
    """One row per (impression, candidate item): user features, item features, affinity."""
    n = logs.height
    aff = logs.select([f"user-item_affinity_{i}" for i in range(N_ITEMS)]).to_numpy()
    it = items.sort("item_id")
    cols = [_codes(logs[f"user_feature_{j}"], vocab[f"u{j}"])[:n] for j in range(4)]
    feat = np.column_stack([*cols, logs["position"].to_numpy().astype(np.float64)])
    item_num = it["item_feature_0"].to_numpy()[item_ids]
    item_cat = [_codes(it[f"item_feature_{j}"], vocab[f"i{j}"])[item_ids] for j in (1, 2, 3)]
    affinity = aff[np.arange(n), item_ids]
    return np.column_stack([feat, item_ids.astype(np.float64), item_num, *item_cat, affinity])


CATEGORICAL = [0, 1, 2, 3, 5, 7, 8, 9]


def _all_items(logs: pl.DataFrame, items: pl.DataFrame, vocab: dict) -> np.ndarray:
    n = logs.height
    blocks = [_design(logs, items, np.full(n, a), vocab) for a in range(N_ITEMS)]
    return np.stack(blocks, axis=1).reshape(n * N_ITEMS, -1)


def _fit(x: np.ndarray, y: np.ndarray, rounds: int = 150) -> lgb.Booster:
    ds = lgb.Dataset(x, y, categorical_feature=CATEGORICAL)
    return lgb.train(PARAMS, ds, rounds)


def main() -> None:
    if not DATA.exists():
        sys.exit(f"skipped: Open Bandit sample not found at {DATA}")
    bts, bts_items = _load("bts")
    rnd, rnd_items = _load("random")
    vocab = {}
    for j in range(4):
        vals = pl.concat([bts[f"user_feature_{j}"], rnd[f"user_feature_{j}"]]).unique().sort()
        vocab[f"u{j}"] = {v: i + 1 for i, v in enumerate(vals.to_list())}
    for j in (1, 2, 3):
        vals = bts_items[f"item_feature_{j}"].unique().sort()
        vocab[f"i{j}"] = {v: i + 1 for i, v in enumerate(vals.to_list())}

    # 1. the selection policy: learned on the bts log only
    x_b = _design(bts, bts_items, bts["item_id"].to_numpy(), vocab)
    policy_model = _fit(x_b, bts["click"].to_numpy())
    n = rnd.height
    x_all = _all_items(rnd, rnd_items, vocab)
    scores = policy_model.predict(x_all).reshape(n, N_ITEMS)
    pi_all = epsilon_greedy_probs(scores, EPSILON)
    logged = rnd["item_id"].to_numpy()
    pi_logged = pi_all[np.arange(n), logged]

    # 2. reward model for DR: cross-fitted on two time-ordered halves of the random log
    x_r = _design(rnd, rnd_items, logged, vocab)
    y = rnd["click"].to_numpy().astype(np.float64)
    q_all = np.empty((n, N_ITEMS))
    half = np.arange(n) < n // 2
    for fit_mask in (half, ~half):
        model = _fit(x_r[fit_mask], y[fit_mask], rounds=100)
        rows = np.flatnonzero(~fit_mask)
        block = x_all.reshape(n, N_ITEMS, -1)[rows].reshape(rows.size * N_ITEMS, -1)
        q_all[rows] = model.predict(block).reshape(rows.size, N_ITEMS)
    q_logged = q_all[np.arange(n), logged]

    pscore = rnd["propensity_score"].to_numpy()
    base = on_policy(y)
    print(
        f"Open Bandit (random log, {n:,} impressions, {int(y.sum())} clicks); policy: "
        f"epsilon-greedy (epsilon={EPSILON}) over LightGBM pCTR learned on the bts log"
    )
    print(f"{'estimator':<10} {'CTR':>9} {'95% CI':>22} {'vs logged':>10}")
    print(f"{'logged':<10} {base.value:9.5f} [{base.low:9.5f}, {base.high:9.5f}] {1.0:9.2f}x")
    for est in estimates(y, pscore, pi_logged, q_logged, pi_all, q_all):
        ratio = est.value / base.value if base.value else float("nan")
        print(f"{est.name:<10} {est.value:9.5f} [{est.low:9.5f}, {est.high:9.5f}] {ratio:9.2f}x")
    print(
        f"matched actions (policy's top item = logged item): "
        f"{int((scores.argmax(axis=1) == logged).sum())} of {n}"
    )


if __name__ == "__main__":
    main()
