"""`bidopt score`'s path on a partitioned log: rows per second and peak memory.

Scores the log with a saved bundle (e.g. `bench/train_scaling.py --save-bundle DIR`) exactly as
`bidopt score` does after loading the model: `load_data` validates and stages every row, then
`training.score.score_logs` encodes, scores (compiled forest + calibrator) and writes pctr next
to the ids batch by batch. The registry download is left out (constant, not per row).

    .venv/bin/python bench/score_scaling.py --logs DIR --bundle DIR [--cvr-bundle DIR]
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logs", type=Path, required=True)
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--cvr-bundle", type=Path)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    from features.bundle import ModelBundle
    from training.pipeline import DataSource, load_data
    from training.score import score_logs

    ctr = ModelBundle.load(args.bundle)
    cvr = ModelBundle.load(args.cvr_bundle) if args.cvr_bundle else None
    with tempfile.TemporaryDirectory(prefix="bidopt-score-", dir=args.logs.parent) as tmp:
        start = time.perf_counter()
        logs, _ = load_data(DataSource(kind="logs", path=str(args.logs)), stage=Path(tmp) / "s")
        ingest_s = time.perf_counter() - start
        done = score_logs(logs, Path(tmp) / "out", ctr, cvr, threads=args.threads)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    total = ingest_s + done.seconds
    print(
        f"score_scaling: {done.rows:,} rows, {ctr.booster.num_trees()} trees"
        f"{' + pcvr' if cvr else ''}: ingest {ingest_s:.1f} s, score {done.seconds:.1f} s "
        f"({done.rows_per_s:,.0f} rows/s), end to end {done.rows / total:,.0f} rows/s, "
        f"peak {peak:,.0f} MB"
    )


if __name__ == "__main__":
    main()
