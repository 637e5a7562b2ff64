"""Training on `--dask local:N` against the local path on the same logs, measured in one run.

The synthetic log is written once as a date-partitioned dataset (`features.synth_parts`, one
part per million rows); a size of k million rows is the first k parts (a glob), so larger
sizes reuse the smaller ones' files. Each measurement is a fresh process:
  * local  the local path: the dataset as one Parquet file, `load_data` + `pipeline.train`
           (ingest, split, spec, encoding, LightGBM with early stopping, calibration, metrics);
  * dask   `cluster.connect("local:N")` as `bidopt train --dask local:N` does, then
           `dask_train.train`: the partitions cleaned and encoded on the workers, LightGBM on
           Dask, the same calibration and metrics. Peak RSS per worker is each worker
           process's VmHWM at the end, the client's its own maximum.
MLflow logging is excluded from both (constant I/O, not per row). `--largest` then tries
growing sizes on the cluster (one at a time, stopping at the first failure or at --until
UTC): the largest count that trained is the figure.

    .venv/bin/python bench/train_dask.py [--rows 5000000] [--workers 2] [--dir DIR]
        [--largest 10000000,15000000,20000000 --largest-rounds 100 --until 12:45]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PART_ROWS = 1_000_000


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _files(ds: Path, rows: int) -> str:
    parts = rows // PART_ROWS
    if parts * PART_ROWS != rows:
        raise SystemExit(f"--rows must be a multiple of {PART_ROWS:,}")
    return ",".join(str(p) for p in sorted(ds.glob("date=*/part-*.parquet")) if _part(p) < parts)


def _part(p: Path) -> int:
    return int(p.stem.split("-")[1])


def ensure_dataset(ds: Path, rows: int) -> None:
    """Parts 0 .. rows/1M - 1 of seed 0 (the parts already written are kept)."""
    from features.synth import generate, write_parquet

    have = {_part(p) for p in ds.glob("date=*/part-*.parquet")}
    for k in range(rows // PART_ROWS):
        if k in have:
            continue
        df = generate(PART_ROWS, seed=0, days=14, part=k)
        day = df.get_column("event_time").dt.date()
        for (date,), rows_of_day in (
            df.with_columns(_day=day)
            .partition_by("_day", maintain_order=True, as_dict=True)
            .items()
        ):
            target = ds / f"date={date}" / f"part-{k:05d}.parquet"
            target.parent.mkdir(parents=True, exist_ok=True)
            write_parquet(rows_of_day.drop("_day"), target)
        print(f"  generated part {k}", file=sys.stderr, flush=True)


def run_local(files: str, single: Path, rounds: int | None) -> dict:
    import polars as pl

    from training.config import load_config
    from training.pipeline import DataSource, load_data, train

    if not single.exists():
        pl.concat([pl.read_parquet(f) for f in files.split(",")]).write_parquet(single)
    cfg = load_config("ctr", overrides=[f"num_boost_round={rounds}"] if rounds else [])
    start = time.perf_counter()
    frame, fp = load_data(DataSource(kind="logs", path=str(single)))
    out = train(frame, fp, cfg, register=False)
    return {
        "wall_s": time.perf_counter() - start,
        "peak_mb": _peak_mb(),
        "logloss": out.metrics["logloss"],
        "trees": out.fit.best_iteration,
        "rows_train": out.split_info["rows_train"],
        **{k: round(v, 1) for k, v in out.timings.items()},
    }


def _vmhwm_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_dask(files: str, workers: int, rounds: int | None, memory_limit: str | None) -> dict:
    from training import dask_train
    from training.cluster import connect
    from training.config import load_config

    cfg = load_config("ctr", overrides=[f"num_boost_round={rounds}"] if rounds else [])
    logs = _view(Path(files.split(",")[0]).parent.parent, files.split(","))
    start = time.perf_counter()
    with connect(f"local:{workers}", memory_limit=memory_limit) as cluster:
        t0 = time.perf_counter()
        out, _ = dask_train.train(cluster, logs, cfg, register=False)
        wall = time.perf_counter() - t0
        peaks = cluster.client.run(_vmhwm_mb)
    return {
        "wall_s": wall,
        "wall_with_cluster_start_s": time.perf_counter() - start,
        "client_peak_mb": _peak_mb(),
        "worker_peak_mb": sorted(round(v) for v in peaks.values()),
        "logloss": out.metrics["logloss"],
        "trees": out.fit.best_iteration,
        "rows_train": out.split_info["rows_train"],
        "logs": str(logs),
        **{k: round(v, 1) for k, v in out.timings.items()},
    }


def _view(ds: Path, files: list[str]) -> Path:
    """A folder of links to the chosen parts (same date= layout), read as any dataset."""
    view = ds.parent / f"view-{len(files)}"
    for f in map(Path, files):
        link = view / f.parent.name / f.name
        if not link.exists():
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(f)
    return view


def child(args: list[str], timeout: float) -> dict:
    cmd = [sys.executable, __file__, *args]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    log = (
        Path(args[args.index("--dir") + 1])
        / f"{args[args.index('--phase') + 1]}-{args[args.index('--rows') + 1]}.log"
    )
    log.write_text(proc.stderr)  # the child's own messages (workers' too), for a failure
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return {"error": f"exit {proc.returncode}: {tail[:300]}"}
    return json.loads(lines[-1])


def _memory_limit(workers: int) -> str:
    """Each worker's share of what the machine has available now, less 3 GB for the client."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            avail = int(line.split()[1]) * 1024
            return str(max(int((avail - 3 * 2**30) / workers), 2**30))
    return "auto"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=5_000_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--dir", type=Path, default=Path("/tmp/bidopt-bench-dask"))
    ap.add_argument("--rounds", type=int, default=0, help="num_boost_round (0: the default)")
    ap.add_argument("--skip-compare", action="store_true")
    ap.add_argument("--largest", default="", help="comma-separated row counts to try on Dask")
    ap.add_argument("--largest-rounds", type=int, default=100)
    ap.add_argument("--until", default="", help="HH:MM UTC: start no size after this")
    ap.add_argument("--phase", default="", help=argparse.SUPPRESS)
    ap.add_argument("--files", default="", help=argparse.SUPPRESS)
    ap.add_argument("--memory-limit", default="", help=argparse.SUPPRESS)
    a = ap.parse_args()
    rounds = a.rounds or None
    if a.phase == "local":
        print(json.dumps(run_local(a.files, a.dir / f"all-{a.rows}.parquet", rounds)))
        return
    if a.phase == "dask":
        print(json.dumps(run_dask(a.files, a.workers, rounds, a.memory_limit or None)))
        return
    ds = a.dir / "ds"
    common = ["--dir", str(a.dir), "--workers", str(a.workers)]
    if not a.skip_compare:
        ensure_dataset(ds, a.rows)
        files = _files(ds, a.rows)
        base = [*common, "--rows", str(a.rows), "--files", files, "--rounds", str(a.rounds)]
        print(f"{a.rows:,} rows, local path against --dask local:{a.workers}", flush=True)
        local = child([*base, "--phase", "local"], 7200)
        print(f"  local: {json.dumps(local)}", flush=True)
        dask = child([*base, "--phase", "dask", "--memory-limit", _memory_limit(a.workers)], 7200)
        print(f"  dask:  {json.dumps(dask)}", flush=True)
        if "error" not in local and "error" not in dask:
            print(
                f"  wall dask/local {dask['wall_s'] / local['wall_s']:.2f}x "
                f"({dask['wall_s']:.0f} s vs {local['wall_s']:.0f} s); peak per worker "
                f"{max(dask['worker_peak_mb']) / 1024:.1f} GB (client "
                f"{dask['client_peak_mb'] / 1024:.1f} GB) vs local {local['peak_mb'] / 1024:.1f} "
                f"GB; test logloss dask/local {dask['logloss'] / local['logloss']:.4f} "
                f"({dask['logloss']:.5f} vs {local['logloss']:.5f}; trees {dask['trees']} vs "
                f"{local['trees']})",
                flush=True,
            )
    largest = 0
    for rows in [int(r) for r in a.largest.split(",") if r]:
        if a.until and datetime.now(UTC).strftime("%H:%M") >= a.until:
            print(f"  {rows:,}: not started (past {a.until} UTC)", flush=True)
            break
        ensure_dataset(ds, rows)
        base = [*common, "--rows", str(rows), "--files", _files(ds, rows)]
        base += ["--rounds", str(a.largest_rounds), "--memory-limit", _memory_limit(a.workers)]
        t = time.perf_counter()
        res = child([*base, "--phase", "dask"], 7200)
        print(f"  dask {rows:,} rows ({time.perf_counter() - t:.0f} s): {json.dumps(res)}")
        if "error" in res:
            break
        largest = rows
    if a.largest:
        print(f"largest row count trained on local:{a.workers}: {largest:,}", flush=True)


if __name__ == "__main__":
    main()
