"""Issue 4's "must show", in one run: strategies with learned pCTR on synthetic logs against the
same strategies on the true pCTR, iPinYou 2259 end to end, pacing over a shaped day, and
first-price shading against truthful and a fixed 20% shade.

Windows are strictly time-ordered: the pCTR model trains on the first 50% of the log (early
stopping and calibration inside it; `--model-share`), strategy parameters and the win-rate
model are fitted on 40% of the rest, and the last 60% of the rest is replayed. Nothing is
fitted on the replayed window. Clicks are shown realised and in expectation (true pCTR summed
over the wins): the second has no Bernoulli noise, so small budgets compare fairly.

    python bench/bidding_strategies.py [--rows 800000] [--model-share 0.5]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

from features.synth import generate
from training.config import load_config
from training.pipeline import fit_bundle
from training.simulate import Probabilities, simulate
from training.splits import make_split

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the shared test harnesses

from tests.helpers.pacing_day import simulate_day

SHARED = Path(
    os.environ.get(
        "BIDOPT_SHARED_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
    )
)
STRATEGIES = ["linear", "constant", "ortb1", "ortb2", "lagrangian"]
FRACTIONS = ["1/16", "1/8"]


def learned_vs_truth(rows: int, model_share: float) -> bool:
    t0 = time.perf_counter()
    df = generate(rows, seed=0).sort("event_time")
    cut = round(rows * model_share)
    model_part = df[:cut]
    cfg = load_config("ctr")
    split, _ = make_split(model_part, "ctr", train_frac=0.8, valid_frac=0.2 - 1e-9)
    bundle, fit, choice, _ = fit_bundle(split, cfg)
    rest = df[cut:]
    pctr = bundle.predict_frame(rest, threads=2)
    res = simulate(
        rest, Probabilities(pctr, None, "learned pCTR"), strategies=STRATEGIES,
        fractions=FRACTIONS, replay_fraction=0.6, goal="cpc", target=1.0,
    )  # fmt: skip
    table = res.table()
    print(
        f"synthetic: {rows:,} rows; model on the first {model_share:.0%} "
        f"({fit.best_iteration} trees, {choice.method}), strategies fitted on the next "
        f"{0.4 * (1 - model_share):.0%}, replayed the last {0.6 * (1 - model_share):.0%} "
        f"({res.params['replay_auctions']:,} won auctions) in {time.perf_counter() - t0:.0f} s"
    )
    ok = True
    for frac in (1 / 16, 1 / 8):
        part = table.filter(pl.col("budget_fraction") == frac)
        clicks = dict(zip(part["strategy"], part["clicks"], strict=True))
        expected = dict(zip(part["strategy"], part["expected_clicks"], strict=True))
        best = max(("ortb1", "ortb2", "lagrangian"), key=lambda s: expected[s])
        print(f"\n  budget 1/{round(1 / frac)} of the window's market total")
        print("  clicks: realised (expected = true pCTR summed over the wins)")
        print(f"  {'strategy':<12}{'learned':>16}{'truth':>16}{'ratio':>14}")
        for s in STRATEGIES:
            t = f"{s}@truth"
            ratio = clicks[s] / clicks[t] if clicks[t] else float("nan")
            e_ratio = expected[s] / expected[t] if expected[t] else float("nan")
            print(
                f"  {s:<12}{clicks[s]:>8.0f} ({expected[s]:>5.0f}){clicks[t]:>8.0f} "
                f"({expected[t]:>5.0f}){ratio:>7.2f} ({e_ratio:.2f})"
            )
            if s in ("ortb1", "ortb2", "lagrangian") and not (ratio >= 0.9 and e_ratio >= 0.9):
                ok = False
        beats = expected[best] > max(expected["linear"], expected["constant"])
        beats &= clicks[best] > max(clicks["linear"], clicks["constant"])
        ok &= beats
        print(
            f"  best optimal ({best}) {clicks[best]:.0f} ({expected[best]:.0f}) vs linear "
            f"{clicks['linear']:.0f} ({expected['linear']:.0f}), constant "
            f"{clicks['constant']:.0f} ({expected['constant']:.0f}): {'PASS' if beats else 'FAIL'}"
        )
    print(f"\n  each optimal strategy >= 90% of its true-pCTR clicks: {'PASS' if ok else 'FAIL'}")
    return ok


def ipinyou() -> None:
    path = SHARED / "ipinyou_2259_logs" / "train.log.tsv.gz"
    if not path.is_file():
        print(f"\niPinYou 2259: skipped, {path} not found")
        return
    from features.ingest import load_logs

    df = load_logs(path).frame
    pctr = np.full(df.height, df["click"].mean() or 1e-3)
    res = simulate(
        df, Probabilities(pctr, None, "constant pCTR"), strategies=["linear", "constant", "ortb1"],
        fractions=["1/8", "1/2"], goal="cpc", target=1.0,
    )  # fmt: skip
    t = res.table()
    print(
        f"\niPinYou 2259: {df.height:,} real impressions, {res.params['replay_auctions']:,} "
        f"replayed on logged pay prices ({int(df['click'].sum())} clicks: a smoke test)"
    )
    for r in t.iter_rows(named=True):
        print(
            f"  {r['strategy']:<10} 1/{round(1 / r['budget_fraction']):<3} wins {r['wins']:>5} "
            f"clicks {r['clicks']:.0f} spend {r['spend']:,.0f}"
        )


def pacing() -> bool:
    print("\npacing over a simulated day (shaped traffic, 15-minute control interval)")
    ok = True
    for over in (4.0, 2.0, 1.2):
        day = simulate_day(overspend=over)
        last_bid = day.max_bid_seen
        spend_ok = 0.95 * day.budget <= day.spend <= day.budget + last_bid
        late = day.exhausted_share is None or day.exhausted_share >= 0.9
        ok &= spend_ok and late
        ran_out = "never" if day.exhausted_share is None else f"{day.exhausted_share:.1%}"
        print(
            f"  unpaced spend {over:.1f}x budget: spent {day.spend_share:.1%} of budget, "
            f"ran out at {ran_out} of the day: {'PASS' if spend_ok and late else 'FAIL'}"
        )
    return ok


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=800_000)
    parser.add_argument(
        "--model-share", type=float, default=0.5,
        help="earliest share of the rows that trains the pCTR model; the rest is split 40/60 "
        "into the strategies' fit window and the replayed window",
    )  # fmt: skip
    args = parser.parse_args()
    results = [learned_vs_truth(args.rows, args.model_share), pacing()]
    ipinyou()
    print("\nshading and replay speed: bench/bidding_speed.py")
    sys.exit(0 if all(results) else 1)


if __name__ == "__main__":
    main()
