"""`bidopt simulate`'s memory on a partitioned log: the replay's columns only, against the
whole log in memory (what it held before), each in a fresh process on the same rows.

Both score the rows batch by batch with a saved bundle (e.g. `bench/train_scaling.py
--save-bundle DIR`; the registry download is left out) and replay them with the same strategy
and budget:
  * columns  today's path (`training.simulate_cli._load`): every row validated and staged, the
             model features read from the staged batches as they are scored, and only the
             columns the replay reads (`REPLAY_COLUMNS`) collected;
  * whole    the path before: the whole validated log collected as one frame, then scored.
Printed: peak RSS, the RSS after imports, their difference per row, wall seconds, and whether
the two replays agree (they must: same rows, same probabilities).

    .venv/bin/python bench/simulate_scaling.py --logs DIR --bundle DIR [--strategies linear]
                                               [--modes columns,whole] [--max-auctions N]

With --max-auctions the columns path replays simulate's systematic sample of a larger log
(`--max-auctions` of `bidopt simulate`): its peak then no longer grows with the log.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from train_scaling import rss_mb  # noqa: E402  (the shared measurement)


def worker(
    mode: str, logs: Path, bundle_dir: Path, strategies: str, fraction: str, cap: int
) -> dict:
    from features.bundle import ModelBundle
    from features.logset import FrameBatches, collect
    from training import simulate as sim
    from training.pipeline import DataSource, load_data
    from training.score import probabilities
    from training.simulate_cli import _load

    base = rss_mb()
    bundle = ModelBundle.load(bundle_dir)
    start = time.perf_counter()
    if mode == "columns":
        batches, df = _load(logs, 0, 0, max_rows=cap)
        pctr = probabilities(batches, bundle)
    else:
        loaded, _ = load_data(DataSource(kind="logs", path=str(logs)))
        df = collect(loaded)
        pctr = probabilities(FrameBatches(df), bundle)
    result = sim.simulate(
        df,
        sim.Probabilities(pctr, None, "bundle"),
        strategies=strategies.split(","),
        fractions=[fraction],
    )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rows = [{k: r[k] for k in ("strategy", "bids", "wins", "clicks", "spend")} for r in result.rows]
    return {
        "rows": df.height,
        "columns": df.width,
        "sample_every": getattr(batches, "k", 1) if mode == "columns" else 1,
        "seconds": time.perf_counter() - start,
        "peak_mb": peak,
        "base_mb": base,
        "replay": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logs", type=Path, required=True)
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--strategies", default="linear")
    parser.add_argument("--budget-fraction", default="1/8")
    parser.add_argument("--modes", default="columns,whole", help="which paths to run, in order")
    parser.add_argument(
        "--max-auctions", type=int, default=0, help="columns: simulate's cap (0: every row)"
    )
    parser.add_argument("--worker", choices=("columns", "whole"))
    args = parser.parse_args()
    if args.worker:
        out = worker(
            args.worker, args.logs, args.bundle, args.strategies, args.budget_fraction,
            args.max_auctions,
        )  # fmt: skip
        print(json.dumps(out))
        return
    results = {}
    for mode in args.modes.split(","):
        cmd = [sys.executable, __file__, "--worker", mode, "--logs", str(args.logs)]
        cmd += ["--bundle", str(args.bundle), "--strategies", args.strategies]
        cmd += ["--budget-fraction", args.budget_fraction, "--max-auctions", str(args.max_auctions)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=ROOT)
        if proc.returncode != 0:
            raise SystemExit(f"{mode} worker failed:\n{proc.stderr[-3000:]}")
        r = results[mode] = json.loads(proc.stdout.strip().splitlines()[-1])
        per_row = (r["peak_mb"] - r["base_mb"]) * 2**20 / r["rows"]
        print(
            f"{mode:>8}: {r['rows']:,} rows replayed (every {r['sample_every']}th row of the log), "
            f"{r['columns']} columns held, {r['seconds']:.1f} s, "
            f"peak {r['peak_mb']:.0f} MB (base {r['base_mb']:.0f} MB): {per_row:.0f} B per "
            "replayed row",
            flush=True,
        )
    if set(results) != {"columns", "whole"}:
        return
    same = results["columns"]["replay"] == results["whole"]["replay"]
    a, b = results["columns"], results["whole"]
    print(
        f"replays identical: {same}; peak columns / whole: {a['peak_mb'] / b['peak_mb']:.2f}; "
        f"beyond base per row: {(a['peak_mb'] - a['base_mb']) / (b['peak_mb'] - b['base_mb']):.2f}"
    )
    if not same:
        raise SystemExit("the two replays differ")


if __name__ == "__main__":
    main()
