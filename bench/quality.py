"""Model quality: our pCTR and pCVR pipelines against two baselines on the same time split.

Baselines, fitted on the same training window and scored on the same test window:
  * hashed-lr   logistic regression on hashed one-hot features (the classic ad-click model),
                regularisation chosen on the validation window;
  * lgbm-raw    LightGBM with default parameters on the raw columns (strings as pandas
                categories), no calibration.

Part 1: synthetic logs (default 1,000,000 rows): logloss, auc, oracle_gap, ece_rel and
calibration_ratio; ours must have the lowest logloss, ece_rel <= 0.1 and calibration_ratio in
[0.97, 1.03]. Part 1b: pCVR on the quickstart's logs (1,000,000 rows over 28 days) with the
same baselines plus ours-drop (our model without the still-open clicks); ours must have the
lowest logloss and calibration_ratio in [0.9, 1.1]. Part 2: the iPinYou 2997 CTR sample (file
order = time order; the last 30% is the test window), with small-data regularisation for ours.

    .venv/bin/python bench/quality.py [--rows 1000000] [--seed 0] [--skip-ipinyou] [--skip-cvr]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.config import load_config
from training.evaluate import evaluate
from training.pipeline import delayed_for, fit_bundle, labels, window_share
from training.splits import LABEL, Split, ctr_rows, make_split, time_split

CATEGORICAL = (
    "channel", "exchange", "publisher", "placement_id", "slot_visibility", "slot_format",
    "device_type", "os", "browser", "country", "region", "city", "advertiser_id", "campaign_id",
    "creative_id", "auction_type",
)  # fmt: skip
NUMERIC = (
    "slot_width", "slot_height", "floor_price", "user_imps_24h", "user_clicks_24h",
    "user_imps_7d", "user_clicks_7d", "user_secs_since_last_imp",
)  # fmt: skip
SHOWN = ("logloss", "auc", "oracle_gap", "ece_rel", "calibration_ratio")
# 26,773 rows and 255 clicks: the validation window holds ~40 clicks, so early stopping is noisy.
# Stumps with one-vs-rest categorical splits (an additive, LR-like model) overfit least.
IPINYOU_SMALL = [
    "num_leaves=2", "min_data_in_leaf=30", "min_data_per_group=10", "cat_smooth=300",
    "cat_l2=100", "lambda_l2=5", "learning_rate=0.05", "feature_fraction=1.0",
    "max_cat_to_onehot=256", "spec.min_count=5", "early_stopping_rounds=300",
    "num_boost_round=3000",
]  # fmt: skip


def _with_time(df: pl.DataFrame) -> pl.DataFrame:
    return df.with_columns(
        pl.col("event_time").dt.hour().alias("hour"),
        pl.col("event_time").dt.weekday().alias("weekday"),
    )


def _tokens(df: pl.DataFrame) -> list[list[str]]:
    """One-hot tokens per row: `column=value`, bucketed numbers, one token per segment."""
    df = _with_time(df)
    exprs = [pl.format(f"{c}={{}}", pl.col(c).cast(pl.String).fill_null("NA")) for c in CATEGORICAL]
    exprs += [pl.format("hour={}", "hour"), pl.format("weekday={}", "weekday")]
    exprs.append(
        pl.format("size={}x{}", pl.col("slot_width"), pl.col("slot_height")).fill_null("size=NA")
    )
    for c in NUMERIC[2:]:
        bucket = (pl.col(c).cast(pl.Float64) + 1).log(2).floor().cast(pl.Int64).cast(pl.String)
        exprs.append(pl.format(f"{c}={{}}", bucket.fill_null("NA")))
    rows = df.select(pl.concat_list(exprs).alias("t"), pl.col("user_segments")).to_dicts()
    return [r["t"] + [f"seg={s}" for s in (r["user_segments"] or [])] for r in rows]


def hashed_lr(split: Split) -> np.ndarray:
    from sklearn.feature_extraction import FeatureHasher
    from sklearn.linear_model import LogisticRegression

    hasher = FeatureHasher(n_features=2**20, input_type="string", alternate_sign=False)
    x_tr, x_va, x_te = (
        hasher.transform(_tokens(p)) for p in (split.train, split.valid, split.test)
    )
    y_tr, y_va = labels(split.train), labels(split.valid)
    best, best_ll = None, math.inf
    for c in (0.03, 0.1, 0.3):
        model = LogisticRegression(C=c, solver="lbfgs", max_iter=300).fit(x_tr, y_tr)
        ll = evaluate(y_va, model.predict_proba(x_va)[:, 1]).metrics["logloss"]
        if ll < best_ll:
            best, best_ll = model, ll
    print(f"  hashed-lr: C={best.C} chosen on validation", flush=True)  # type: ignore[union-attr]
    return best.predict_proba(x_te)[:, 1]  # type: ignore[union-attr]


def _raw_pandas(df: pl.DataFrame, categories: dict | None = None):
    pdf = _with_time(df).select([*CATEGORICAL, *NUMERIC, "hour", "weekday"]).to_pandas()
    for c in CATEGORICAL:
        cats = categories[c] if categories else None
        if cats is None:
            pdf[c] = pdf[c].astype("category")
        else:  # values the training window never saw become missing, as LightGBM expects
            pdf[c] = pdf[c].where(pdf[c].isin(cats.categories)).astype(cats)
    return pdf


def lgbm_raw(split: Split) -> np.ndarray:
    import lightgbm as lgb

    x_tr = _raw_pandas(split.train)
    dtypes = {c: x_tr[c].dtype for c in CATEGORICAL}
    model = lgb.LGBMClassifier(verbosity=-1, n_jobs=2).fit(x_tr, labels(split.train))
    return model.predict_proba(_raw_pandas(split.test, dtypes))[:, 1]


def ours(
    split: Split, overrides: list[str], target: str = "ctr", df: pl.DataFrame | None = None
) -> np.ndarray:
    """The pipeline's own model; for pCVR with the log `df`, under its cvr.delay setting."""
    cfg = load_config(target, overrides=overrides)  # type: ignore[arg-type]
    delayed = delayed_for(df, split, cfg) if df is not None else None
    bundle, fit, choice, _ = fit_bundle(split, cfg, None, delayed)
    rows = delayed.frame.height if delayed is not None else split.train.height
    how = f", cvr.delay={cfg.delay}" if target == "cvr" else ""
    print(
        f"  ours{how}: {rows:,} training rows, {fit.best_iteration} trees, "
        f"calibration {choice.method}",
        flush=True,
    )
    return bundle.predict_frame(split.test)


def compare(
    split: Split,
    overrides: list[str],
    truth: str | None,
    target: str = "ctr",
    df: pl.DataFrame | None = None,
    scale: float = 1.0,
) -> dict[str, dict]:
    y = labels(split.test)
    t = split.test.get_column(truth).to_numpy() * scale if truth else None
    models = [("ours", lambda: ours(split, overrides, target, df))]
    if target == "cvr":  # the same model on the matured window alone: what the delay part adds
        drop = [*overrides, "cvr.delay=drop"]
        models.append(("ours-drop", lambda: ours(split, drop, target, df)))
    models += [("hashed-lr", lambda: hashed_lr(split)), ("lgbm-raw", lambda: lgbm_raw(split))]
    results = {}
    for name, fn in models:
        start = time.perf_counter()
        p = fn()
        results[name] = evaluate(y, p, truth=t).metrics
        results[name]["seconds"] = time.perf_counter() - start
    return results


def show(title: str, results: dict[str, dict]) -> None:
    print(f"\n{title}")
    names = [m for m in (*SHOWN, "seconds") if any(m in r for r in results.values())]
    print(f"  {'model':<10}" + "".join(f"{m:>19}" for m in names))
    for model, r in results.items():
        print(f"  {model:<10}" + "".join(f"{r.get(m, float('nan')):>19.5f}" for m in names))


def synthetic(rows: int, seed: int) -> bool:
    from features.synth import generate

    start = time.perf_counter()
    df = generate(rows, seed=seed)
    print(f"generated {rows:,} rows in {time.perf_counter() - start:.1f} s", flush=True)
    split, info = make_split(df, "ctr")
    print(f"  split: {info}", flush=True)
    results = compare(split, [], "true_ctr")
    truth = split.test.get_column("true_ctr").to_numpy()
    results["oracle"] = evaluate(labels(split.test), truth, truth=truth).metrics
    results["oracle"]["seconds"] = 0.0
    show(f"synthetic, {rows:,} rows (pCTR, test window {split.test.height:,} rows)", results)
    print("  (oracle = the true probabilities: its ece_rel is the noise floor of 20-bin ECE here)")
    best = min((k for k in results if k != "oracle"), key=lambda k: results[k]["logloss"])
    o = results["ours"]
    checks = {
        "ours has the lowest logloss": best == "ours",
        "ours ece_rel <= 0.1": o["ece_rel"] <= 0.1,
        "ours calibration_ratio in [0.97, 1.03]": 0.97 <= o["calibration_ratio"] <= 1.03,
    }
    for what, ok in checks.items():
        print(f"  {'PASS' if ok else 'FAIL'}  {what}")
    return all(checks.values())


def cvr_synthetic(rows: int, seed: int, days: int) -> bool:
    """pCVR on the quickstart's logs: test window = the newest matured clicks; the baselines
    train on the matured training window (the rows with final labels), ours also on the clicks
    still open at the cut-off (cvr.delay), and ours-drop shows it without them."""
    from features.synth import generate

    df = generate(rows, seed=seed, days=days)
    split, info = make_split(df, "cvr", **_cvr_windows())
    print(f"\npCVR: {rows:,} rows over {days} days; split: {info}", flush=True)
    share = window_share(7.0)
    results = compare(split, [], "true_cvr", "cvr", df, share)
    truth = split.test.get_column("true_cvr").to_numpy() * share
    results["oracle"] = evaluate(labels(split.test), truth, truth=truth).metrics
    results["oracle"]["seconds"] = 0.0
    show(
        f"synthetic, {rows:,} rows over {days} days (pCVR, test window {split.test.height:,} "
        f"clicks, {int(split.test[LABEL].sum())} conversions)",
        results,
    )
    best = min((k for k in results if k != "oracle"), key=lambda k: results[k]["logloss"])
    o = results["ours"]
    checks = {
        "ours has the lowest logloss": best == "ours",
        "ours calibration_ratio in [0.9, 1.1]": 0.9 <= o["calibration_ratio"] <= 1.1,
    }
    for what, ok in checks.items():
        print(f"  {'PASS' if ok else 'FAIL'}  {what}")
    return all(checks.values())


def _cvr_windows() -> dict[str, float]:
    cfg = load_config("cvr")
    return {"train_frac": cfg.train_frac, "valid_frac": cfg.valid_frac,
            "attribution_days": cfg.attribution_days}  # fmt: skip


def ipinyou() -> None:
    from features.ingest import load_logs

    base = Path(
        os.environ.get(
            "BIDOPT_SHARED_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
        )
    )
    path = base / "ipinyou_2997_ctr" / "train.csv.gz"
    if not path.is_file():
        print(f"\niPinYou 2997: skipped, {path} not found")
        return
    result = load_logs(path)
    rows = ctr_rows(result.frame)
    # file order is time order: the last 30% of rows are the test window
    split = time_split(rows, 0.55, 0.15)
    print(
        f"\niPinYou 2997: {result.rows_used:,} rows used ({result.rows_quarantined} quarantined); "
        f"train {split.train.height:,} / valid {split.valid.height:,} "
        f"/ test {split.test.height:,}; "
        f"clicks in test {int(split.test[LABEL].sum())}",
        flush=True,
    )
    show("iPinYou 2997 CTR sample (last 30% by file order)", compare(split, IPINYOU_SMALL, None))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-ipinyou", action="store_true")
    parser.add_argument("--skip-synthetic", action="store_true")
    parser.add_argument("--skip-cvr", action="store_true")
    parser.add_argument("--cvr-rows", type=int, default=1_000_000)
    parser.add_argument("--cvr-days", type=int, default=28)
    args = parser.parse_args()
    ok = True
    if not args.skip_synthetic:
        ok = synthetic(args.rows, args.seed)
    if not args.skip_cvr:
        ok = cvr_synthetic(args.cvr_rows, args.seed, args.cvr_days) and ok
    if not args.skip_ipinyou:
        ipinyou()
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
