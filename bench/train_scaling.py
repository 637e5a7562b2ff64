"""Training cost against a bare `lightgbm.train` on the same matrix, measured in the same run.

For each size the synthetic log is generated once and written to Parquet; then two fresh
processes read it:
  * ours  the whole in-process pipeline (time split, spec fit on the training window, encoding
          of the three windows, LightGBM with per-round validation, calibration choice,
          test-window metrics); MLflow logging is excluded (constant I/O, not per row);
  * bare  only `lightgbm.train` with the same parameters and number of rounds on the same
          training matrix (built before the clock starts).
Ours runs its default configuration (early stopping on the validation window); bare then runs
exactly as many boosting rounds as ours did, so both grow forests of the same size. Peak RSS
is the process's maximum (reading the data included, the same for both). The feature
transform's throughput is `encode_matrix` over the whole log. CPU seconds (all threads) are
printed next to wall time: on a shared 2-core machine wall time swings by 2x between identical
runs, CPU time much less.

    .venv/bin/python bench/train_scaling.py [--sizes 100000,1000000,5000000] [--max-rounds N]
                                            [--repeat K]  (K alternated pairs, median ratio)
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _config(max_rounds: int):
    from training.config import load_config

    return load_config("ctr", overrides=[f"num_boost_round={max_rounds}"])


def worker(kind: str, data: Path, rounds: int) -> dict[str, float]:
    import lightgbm as lgb
    import polars as pl

    from features.batch import encode_matrix
    from features.spec_fit import fit_spec
    from training import pipeline
    from training.fit import booster_params
    from training.splits import make_split

    df = pl.read_parquet(data)
    cfg = _config(rounds)
    out: dict[str, float] = {"rows": df.height, "read_peak_mb": _peak_mb()}
    if kind == "ours":
        start, cpu = time.perf_counter(), time.process_time()
        outcome = pipeline.train(df, {}, cfg, register=False)
        out["seconds"] = time.perf_counter() - start
        out["cpu_seconds"] = time.process_time() - cpu
        out["trees"] = outcome.fit.best_iteration
        out["rounds"] = len(outcome.fit.valid_logloss)  # trained, incl. the patience rounds
        out["logloss"] = outcome.metrics["logloss"]
        out |= {f"step_{k}": v for k, v in outcome.timings.items()}
        start = time.perf_counter()
        encode_matrix(df, outcome.bundle.spec)
        out["transform_rows_per_s"] = df.height / (time.perf_counter() - start)
    else:
        split, _ = make_split(df, "ctr")
        spec = fit_spec(split.train, **cfg.section("spec"))
        x = encode_matrix(split.train, spec)
        y = split.train.get_column("label").cast(pl.Float64).to_numpy()
        del df, split
        start, cpu = time.perf_counter(), time.process_time()
        data_set = lgb.Dataset(
            x, label=y, feature_name=spec.names, categorical_feature=spec.categorical
        )
        booster = lgb.train(booster_params(cfg.lightgbm), data_set, num_boost_round=rounds)
        out["seconds"] = time.perf_counter() - start
        out["cpu_seconds"] = time.process_time() - cpu
        out["rounds"] = booster.num_trees()
    out["peak_mb"] = _peak_mb()
    return out


def _run(kind: str, data: Path, rounds: int) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--worker", kind, "--data", str(data), "--rounds", str(rounds)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"{kind} worker failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000,5000000")
    parser.add_argument("--max-rounds", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--repeat", type=int, default=1, help="ours/bare pairs per size; the median ratio is kept"
    )
    parser.add_argument("--worker", choices=("ours", "bare"))
    parser.add_argument("--data", type=Path)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.data, args.rounds or args.max_rounds)))
        return

    from features.synth import generate

    header = (
        f"{'rows':>10} {'gen s':>7} {'rounds':>6} {'ours s':>8} {'bare s':>8} {'ratio':>6} "
        f"{'ours cpu':>9} {'bare cpu':>9} {'cpu ratio':>9} "
        f"{'ours MB':>8} {'bare MB':>8} {'transform rows/s':>17}"
    )
    print("train_scaling: pCTR pipeline (early stopping) vs bare lightgbm.train, same rounds")
    print(header, flush=True)
    with tempfile.TemporaryDirectory(prefix="bidopt-scaling-") as tmp:
        for rows in (int(s) for s in args.sizes.split(",")):
            start = time.perf_counter()
            path = Path(tmp) / f"synth-{rows}.parquet"
            generate(rows, seed=args.seed).write_parquet(path)
            gen_s = time.perf_counter() - start
            pairs = []
            for _ in range(max(1, args.repeat)):  # alternated: each pair sees the same neighbours
                ours = _run("ours", path, args.max_rounds)
                bare = _run("bare", path, int(ours["rounds"]))
                pairs.append((ours["seconds"] / bare["seconds"], ours, bare))
            pairs.sort(key=lambda p: p[0])
            ratio, ours, bare = pairs[len(pairs) // 2]
            cpu_ratio = ours["cpu_seconds"] / bare["cpu_seconds"]
            print(
                f"{rows:>10,} {gen_s:>7.1f} {ours['rounds']:>6.0f} "
                f"{ours['seconds']:>8.1f} {bare['seconds']:>8.1f} "
                f"{ratio:>5.2f}x {ours['cpu_seconds']:>9.1f} {bare['cpu_seconds']:>9.1f} "
                f"{cpu_ratio:>8.2f}x {ours['peak_mb']:>8.0f} {bare['peak_mb']:>8.0f} "
                f"{ours['transform_rows_per_s']:>17,.0f}",
                flush=True,
            )
            steps = {k[5:]: v for k, v in ours.items() if k.startswith("step_")}
            print(
                "           ours by step: " + ", ".join(f"{k} {v:.1f}" for k, v in steps.items()),
                flush=True,
            )
            if len(pairs) > 1:
                print("           ratios: " + ", ".join(f"{p[0]:.2f}" for p in pairs), flush=True)
            path.unlink()
    print("bar: ratio <= 1.3x at 5,000,000 rows")


if __name__ == "__main__":
    main()
