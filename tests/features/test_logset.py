"""Logs as a file, folder or glob, validated batch by batch: the same rows, accounting,
quarantine and content hash as `load_logs` on the whole log."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from features.ingest import LogError, fingerprint, load_logs, write_csv
from features.logset import FrameBatches, collect, files_sha256, ingest, log_files
from features.schema import COUNTER_COLUMNS
from features.synth import generate


@pytest.fixture(scope="module")
def log() -> pl.DataFrame:
    return generate(6000, seed=8)


def _bad(df: pl.DataFrame, rows: list[int]) -> pl.DataFrame:
    i = pl.int_range(pl.len())
    return df.with_columns(bid_price=pl.when(i.is_in(rows)).then(-1.0).otherwise("bid_price"))


def test_log_files_of_a_folder_a_glob_and_a_file(tmp_path: Path) -> None:
    for name in ["date=2024-03-05/b.parquet", "date=2024-03-04/a.parquet", "c.csv.gz",
                 "date=2024-03-04/a.quarantine.csv", ".hidden/x.parquet", "notes.md"]:  # fmt: skip
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    names = [p.relative_to(tmp_path).as_posix() for p in log_files(tmp_path)]
    assert names == ["c.csv.gz", "date=2024-03-04/a.parquet", "date=2024-03-05/b.parquet"]
    assert log_files(f"{tmp_path}/date=*/*.parquet") == [
        tmp_path / "date=2024-03-04/a.parquet",
        tmp_path / "date=2024-03-05/b.parquet",
    ]
    assert log_files(tmp_path / "c.csv.gz") == [tmp_path / "c.csv.gz"]
    with pytest.raises(LogError, match="no such file or folder"):
        log_files(tmp_path / "nope")
    with pytest.raises(LogError, match="no file matches"):
        log_files(f"{tmp_path}/date=*/*.csv")
    (tmp_path / "empty").mkdir()
    with pytest.raises(LogError, match="a folder without log files"):
        log_files(tmp_path / "empty")


def test_ingest_counts_every_row_batch_by_batch(tmp_path: Path, log: pl.DataFrame) -> None:
    """Three files, one CSV, bad rows in two of them (one straddling batches): the staged rows
    are the good rows in order, rows_in = used + quarantined, each file has its quarantine with
    its own row numbers; several files are hashed by their bytes, one file by its rows."""
    logs = tmp_path / "logs"
    (logs / "date=1").mkdir(parents=True)
    (logs / "date=2").mkdir()
    bad = _bad(log, [5, 1999, 2000, 4500])
    bad[:2500].write_parquet(logs / "date=1" / "a.parquet")
    write_csv(bad[2500:4000], logs / "date=2" / "b.csv")
    bad[4000:].write_parquet(logs / "date=2" / "c.parquet")
    got = ingest(logs, tmp_path / "stage", batch_rows=700)
    assert (got.rows_in, got.rows_used, got.rows_quarantined) == (6000, 5996, 4)
    assert got.reasons == {"negative bid_price": 4}
    assert got.files == 3 and got.source == "canonical"
    assert len(got.logs) > 3  # the Parquet files were read in slices
    whole = tmp_path / "whole.parquet"
    bad.write_parquet(whole)
    once = load_logs(whole, quarantine_path=tmp_path / "q")
    assert collect(got.logs).equals(once.frame)
    assert got.fingerprint()["content_sha256"] == files_sha256(log_files(logs))
    assert got.fingerprint()["event_time_max"] == fingerprint(once)["event_time_max"]
    alone = ingest(whole, tmp_path / "stage1", batch_rows=700, quarantine=tmp_path / "q1")
    assert alone.fingerprint()["content_sha256"] == fingerprint(once)["content_sha256"]
    write_csv(bad[2500:4001], logs / "date=2" / "b.csv")  # one more row: another hash
    assert files_sha256(log_files(logs)) != got.content_sha256
    numbers = {p.name: pl.read_csv(p)["row_number"].to_list() for p in got.quarantine_paths}
    assert numbers == {"a.quarantine.csv": [6, 2000, 2001], "c.quarantine.csv": [501]}


def test_counters_missing_from_several_files_are_counted_over_all(
    tmp_path: Path, log: pl.DataFrame
) -> None:
    """A user's history crosses files: the counters of a source without them are those of
    the whole log, not of each file."""
    raw = log.drop(COUNTER_COLUMNS)
    for i, part in enumerate([raw[:3000], raw[3000:]]):
        write_csv(part, tmp_path / f"part-{i}.csv")
    write_csv(raw, tmp_path / "all.csv.txt")
    got = ingest(f"{tmp_path}/part-*.csv", tmp_path / "stage")
    assert collect(got.logs).equals(load_logs(tmp_path / "all.csv.txt").frame)
    assert collect(got.logs).select(COUNTER_COLUMNS).equals(log.select(COUNTER_COLUMNS))


def test_unusable_files_are_named(tmp_path: Path, log: pl.DataFrame) -> None:
    (tmp_path / "logs").mkdir()
    log[:10].write_parquet(tmp_path / "logs" / "a.parquet")
    log[:10].drop("event_time").write_parquet(tmp_path / "logs" / "b.parquet")
    with pytest.raises(LogError, match=r"b\.parquet: missing required columns: event_time"):
        ingest(tmp_path / "logs", tmp_path / "stage")


def test_frame_batches_are_slices_of_the_frame(log: pl.DataFrame) -> None:
    batches = FrameBatches(log, batch_rows=2500)
    assert len(batches) == 3 and batches.rows == 6000
    assert collect(batches).equals(log)
    assert batches.batch(2, ["event_time"]).height == 1000


def test_every_kth_row_of_each_batch() -> None:
    from features.logset import EveryKth

    frame = pl.DataFrame({"i": list(range(25)), "x": [f"v{i}" for i in range(25)]})
    logs = FrameBatches(frame, batch_rows=10)  # batches of 10, 10, 5
    sample = EveryKth.of(logs, 3)
    assert sample.heights == (10, 10, 5) and len(sample) == 3
    got = collect(sample)
    assert got["i"].to_list() == [0, 3, 6, 9, 10, 13, 16, 19, 20, 23]
    assert sample.rows == got.height
    assert frame.filter(sample.mask()).equals(got)
    assert collect(sample, ["x"]).columns == ["x"]
    assert collect(EveryKth.of(logs, 1)).equals(frame)
    with pytest.raises(ValueError, match="at least 1"):
        EveryKth.of(logs, 0)
