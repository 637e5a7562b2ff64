"""Delayed feedback: pCVR under cvr.delay drop, naive and em, trained at a cut-off and scored on
the traffic that follows it, against the truth.

One synthetic world over TRAIN_DAYS + TEST_DAYS + the attribution window. The training log is
what a bidder holds at the cut-off C = start + TRAIN_DAYS: impressions before C, clicks that
happened by C, conversions that happened by C (the newest week of training clicks is unmatured).
Each mode trains on it with the real pipeline (`bidopt train cvr --set cvr.delay=...`: split,
spec, LightGBM, calibration). The test window is every click of the next TEST_DAYS, labelled
by its whole attribution window from the uncut log, the oracle being `true_cvr` times the
window's share of conversions. Also, same run:

* freshness: campaign FRESH starts in the last five days of the training window (its earlier
  impressions are removed from the world), so `drop` has never seen a matured click of it; its
  test-window clicks' mean pCVR under each mode against their truth;
* `bidopt simulate --goal cpa` (the library call the command wraps, `training.simulate.
  simulate`, with `--fit-logs` = the last TEST_DAYS before the cut-off), replaying the test
  window's auctions, pCTR held at the truth so that the differences are pCVR's alone: truthful
  bidding (`value`, budget = the window's market total) gives eCPA against the target, the
  Lagrangian at 1/8 of the market total conversions won at equal spend.

Checks (on the mean over `--seeds`): the default mode (training/defaults.toml) has the lowest
oracle gap, and a calibration ratio in [0.95, 1.05].

    .venv/bin/python bench/delayed_feedback.py [--rows 3600000] [--seeds 0,1,2]
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.config import DELAY_MODES, load_config
from training.evaluate import evaluate
from training.pipeline import delayed_for, fit_bundle, split_for, window_share

TRAIN_DAYS, TEST_DAYS, WINDOW_DAYS = 14, 3, 7
FRESH_DAYS = 5
SHOWN = ("logloss", "auc", "calibration_ratio", "oracle_gap")


def world(rows: int, seed: int) -> tuple[pl.DataFrame, str]:
    """The uncut log, with the freshness campaign's impressions before its start removed."""
    from features.synth import DEFAULT_START, generate

    df = generate(rows, seed=seed, days=TRAIN_DAYS + TEST_DAYS + WINDOW_DAYS)
    cutoff = DEFAULT_START + timedelta(days=TRAIN_DAYS)
    clicks = df.filter(pl.col("click") == 1)
    share = clicks.group_by("campaign_id").agg(
        (pl.len() / clicks.height).alias("share"), pl.col("true_cvr").mean().alias("cvr")
    )
    # the best converter among campaigns with a real share of the clicks: what drop misses most
    fresh = share.filter(pl.col("share") > 0.03).sort("cvr", descending=True)["campaign_id"][0]
    start = cutoff - timedelta(days=FRESH_DAYS)
    df = df.filter((pl.col("campaign_id") != fresh) | (pl.col("event_time") >= start))
    return df, fresh


def at_cutoff(df: pl.DataFrame, cutoff: object) -> pl.DataFrame:
    """What the log holds at the cut-off: earlier impressions, clicks and conversions so far."""
    c = pl.lit(cutoff)
    clicked = (pl.col("click") == 1) & (pl.col("click_time") < c)
    converted = clicked & (pl.col("conversion") == 1) & (pl.col("conversion_time") < c)
    return df.filter(pl.col("event_time") < c).with_columns(
        click=clicked.cast(pl.Int8),
        click_time=pl.when(clicked).then("click_time"),
        conversion=converted.cast(pl.Int8),
        conversion_time=pl.when(converted).then("conversion_time"),
        conversion_value=pl.when(converted).then("conversion_value"),
    )


def test_clicks(df: pl.DataFrame, cutoff: object) -> pl.DataFrame:
    """Clicks of the next TEST_DAYS, labelled by their whole window (the uncut log has it)."""
    end = pl.lit(cutoff) + timedelta(days=TEST_DAYS)
    at = pl.col("click_time")
    window = timedelta(days=WINDOW_DAYS)
    converted = (pl.col("conversion") == 1) & (pl.col("conversion_time") - at <= window)
    return df.filter(
        (pl.col("click") == 1) & (at >= pl.lit(cutoff)) & (pl.col("event_time") < end)
    ).with_columns(converted.cast(pl.Int8).alias("label"))


def train_modes(log: pl.DataFrame) -> dict[str, object]:
    bundles = {}
    for mode in DELAY_MODES:
        cfg = load_config("cvr", overrides=[f"cvr.delay={mode}"])
        t = time.perf_counter()
        split, info = split_for(log, cfg)
        delayed = delayed_for(log, split, cfg)
        bundle, fit, choice, _ = fit_bundle(split, cfg, None, delayed)
        used = delayed.frame.height if delayed is not None else split.train.height
        extra = ""
        if delayed is not None and delayed.delay is not None:
            d = delayed.delay
            extra = (
                f"; delay fitted on {d.conversions} matured conversions: "
                f"{d.share_within(3600):.2f} within the hour, {d.share_within(86400):.2f} "
                "within a day"
            )
        print(
            f"  {mode:<6} trained on {used:,} clicks ({info['positives_train']} matured "
            f"positives), {fit.best_iteration} trees, calibration {choice.method}, "
            f"{time.perf_counter() - t:.1f} s{extra}",
            flush=True,
        )
        bundles[mode] = bundle
    return bundles


def table(title: str, rows: dict[str, dict[str, float]], names: tuple[str, ...]) -> None:
    print(f"\n{title}")
    print(f"  {'mode':<8}" + "".join(f"{m:>19}" for m in names))
    for mode, r in rows.items():
        print(f"  {mode:<8}" + "".join(f"{r.get(m, float('nan')):>19.4f}" for m in names))


def simulate_cpa(
    df: pl.DataFrame, log: pl.DataFrame, cutoff: object, bundles: dict[str, object]
) -> tuple[float, dict[str, dict[str, float]]]:
    """Each mode's pCVR in `simulate --goal cpa`: strategies fitted on the last TEST_DAYS before
    the cut-off (what the bidder has, `--fit-logs`), replayed on the TEST_DAYS after it."""
    from training import simulate as sim

    c = pl.lit(cutoff)
    span = timedelta(days=TEST_DAYS)
    replay = df.filter((pl.col("event_time") >= c) & (pl.col("event_time") < c + span))
    fit = log.filter(pl.col("event_time") >= c - span)
    won = replay.filter("won")
    value = (won["true_ctr"] * won["true_cvr"]).mean()
    # the CPA at which the average won impression is worth its median market price
    target = round(float(won["market_price"].median()) / (1000.0 * value), 2)  # type: ignore[operator]
    print(
        f"\nsimulate --goal cpa --target {target:g}: fitted on the {fit.height:,} auctions of "
        f"the last {TEST_DAYS} days before the cut-off, replayed on the {replay.height:,} after "
        "it; pCTR = true_ctr",
        flush=True,
    )
    results: dict[str, dict[str, float]] = {}
    for mode, bundle in bundles.items():
        res = sim.simulate(
            replay,
            sim.Probabilities(
                replay["true_ctr"].to_numpy(),
                bundle.predict_frame(replay),
                f"pcvr_{mode}",  # type: ignore[attr-defined]
            ),
            strategies=["value", "lagrangian"],
            fractions=["1", "1/32"],
            fit_df=fit,
            fit_probs=sim.Probabilities(
                fit["true_ctr"].to_numpy(),
                bundle.predict_frame(fit),
                f"pcvr_{mode}",  # type: ignore[attr-defined]
            ),
            goal="cpa",
            target=target,
        )
        for row in res.table().iter_rows(named=True):
            name, frac = row["strategy"], row["budget_fraction"]
            key = "truth" if name.endswith("@truth") else mode
            if (name.startswith("value") and frac != 1.0) or (
                name.startswith("lagrangian") and frac != 1 / 32
            ):
                continue
            tag = "value" if name.startswith("value") else "lagrangian"
            r = results.setdefault(key, {})
            r[f"{tag}_ecpa/target"] = row["ecpa"] / 1000.0 / target  # prices are CPM
            r[f"{tag}_conversions"] = row["conversions"]
            r[f"{tag}_spend"] = row["spend"] / 1000.0
    return target, results


def run(rows: int, seed: int) -> dict[str, dict[str, float]]:
    """One world: every table for it; returns the test-window scores per mode."""
    from features.synth import DEFAULT_START

    start = time.perf_counter()
    df, fresh = world(rows, seed)
    cutoff = DEFAULT_START + timedelta(days=TRAIN_DAYS)
    log = at_cutoff(df, cutoff)
    test = test_clicks(df, cutoff)
    clicks = int(log["click"].sum())
    print(
        f"\n=== seed {seed}: {df.height:,} rows over {TRAIN_DAYS + TEST_DAYS + WINDOW_DAYS} days "
        f"in {time.perf_counter() - start:.1f} s; training log {log.height:,} rows, {clicks:,} "
        f"clicks, cut-off {cutoff:%Y-%m-%d}; test window {test.height:,} clicks, "
        f"{int(test['label'].sum())} conversions; fresh campaign {fresh} from "
        f"{FRESH_DAYS} days before the cut-off",
        flush=True,
    )
    bundles = train_modes(log)
    y = test["label"].cast(pl.Float64).to_numpy()
    truth = test["true_cvr"].to_numpy() * window_share(WINDOW_DAYS)
    scores, preds = {}, {}
    for mode, bundle in bundles.items():
        preds[mode] = bundle.predict_frame(test)  # type: ignore[attr-defined]
        scores[mode] = evaluate(y, preds[mode], truth=truth).metrics
    scores["oracle"] = evaluate(y, truth, truth=truth).metrics
    table(f"pCVR on the {TEST_DAYS} days after the cut-off ({test.height:,} clicks)", scores, SHOWN)
    is_fresh = (test["campaign_id"] == fresh).to_numpy()
    fresh_rows = {
        mode: {
            "mean_pcvr": float(p[is_fresh].mean()),
            "over_truth": float(p[is_fresh].mean() / truth[is_fresh].mean()),
        }
        for mode, p in preds.items()
    }
    fresh_rows["truth"] = {"mean_pcvr": float(truth[is_fresh].mean()), "over_truth": 1.0}
    print(
        f"\nfreshness: {fresh} started {FRESH_DAYS} days before the cut-off; "
        f"{int(is_fresh.sum())} test-window clicks, {int(y[is_fresh].sum())} conversions"
    )
    table("  mean pCVR on its test-window clicks", fresh_rows, ("mean_pcvr", "over_truth"))
    target, sim_rows = simulate_cpa(df, log, cutoff, bundles)
    table(
        f"  value: truthful bids, budget = the market total; lagrangian: 1/32 of it "
        f"(eCPA / target {target:g}, spend in currency)",
        sim_rows,
        (
            "value_ecpa/target", "value_conversions", "value_spend",
            "lagrangian_ecpa/target", "lagrangian_conversions", "lagrangian_spend",
        ),
    )  # fmt: skip
    for mode in DELAY_MODES:
        scores[mode]["fresh_over_truth"] = fresh_rows[mode]["over_truth"]
        scores[mode]["cpa_conversions"] = sim_rows[mode]["lagrangian_conversions"]
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=3_600_000)
    parser.add_argument("--seeds", default="0", help="comma-separated; the checks use the mean")
    args = parser.parse_args()
    start = time.perf_counter()
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    runs = [run(args.rows, seed) for seed in seeds]
    names = (*SHOWN, "fresh_over_truth", "cpa_conversions")
    mean = {m: {k: float(np.mean([r[m][k] for r in runs])) for k in names} for m in DELAY_MODES}
    if len(runs) > 1:
        table(f"mean over seeds {args.seeds}", mean, names)
    default = load_config("cvr").delay
    best = min(DELAY_MODES, key=lambda m: mean[m]["oracle_gap"])
    ratio = mean[default]["calibration_ratio"]
    checks = {
        f"the default ({default}) has the lowest oracle gap": best == default,
        f"the default's calibration_ratio {ratio:.3f} is in [0.95, 1.05]": 0.95 <= ratio <= 1.05,
    }
    print()
    for what, ok in checks.items():
        print(f"  {'PASS' if ok else 'FAIL'}  {what}")
    print(f"done in {time.perf_counter() - start:.0f} s")
    sys.exit(0 if all(checks.values()) else 1)


if __name__ == "__main__":
    main()
