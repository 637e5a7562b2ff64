"""features/forest.py against `Booster.predict` on the same model and rows, in one run.

Trains a pCTR model through the real pipeline on synthetic rows (fixed rounds, no early
stopping), then scores its test window both ways, alternating, 1 and 2 threads, and a batch of
100 rows (the service's matrix path). Prints seconds, µs per row and the ratio; checks that the
raw scores are identical.

    .venv/bin/python bench/forest_speed.py [--rows 600000] [--rounds 300] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def best_of(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=600_000)
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    import numpy as np

    from features.batch import encode_matrix
    from features.forest import Forest
    from features.synth import generate
    from training import pipeline
    from training.config import load_config

    cfg = load_config(
        "ctr", overrides=[f"num_boost_round={args.rounds}", "early_stopping_rounds=0"]
    )
    split, _ = pipeline.split_for(generate(args.rows, seed=0), cfg)
    bundle, *_ = pipeline.fit_bundle(split, cfg)
    booster = bundle.booster
    x = encode_matrix(split.test, bundle.spec)
    forest = Forest.from_booster(booster)
    forest.predict_raw(x[:100])  # numba: load (or compile) before the clock
    same = np.array_equal(forest.predict_raw(x), booster.predict(x, raw_score=True))
    print(
        f"forest_speed: {booster.num_trees()} trees x {x.shape[1]} features, "
        f"{x.shape[0]:,} test rows; raw scores identical: {same}"
    )
    print(f"{'case':<22} {'Booster.predict':>16} {'forest':>10} {'ratio':>7}")
    cases = [
        ("test window, 1 thread", x, 1, args.repeat),
        ("test window, 2 threads", x, 2, args.repeat),
        ("batch of 100, 1 thread", x[:100], 1, 200),
    ]
    for name, rows, threads, repeat in cases:
        lgb_runs, forest_runs = [], []
        for _ in range(3):  # alternated, so both see the same neighbours
            lgb_runs.append(
                best_of(lambda r=rows, t=threads: booster.predict(r, num_threads=t), repeat)
            )
            forest_runs.append(best_of(lambda r=rows, t=threads: forest.predict(r, t), repeat))
        lgb_s, forest_s = statistics.median(lgb_runs), statistics.median(forest_runs)
        unit, scale = ("ms", 1e3) if rows.shape[0] <= 1000 else ("s", 1.0)
        print(
            f"{name:<22} {lgb_s * scale:>13.3f} {unit:<2} {forest_s * scale:>7.3f} {unit:<2} "
            f"{forest_s / lgb_s:>6.2f}x"
        )


if __name__ == "__main__":
    main()
