"""Batch scoring of logs of any size: pCTR (and pCVR) next to each row's ids, batch by batch.

Each batch of the validated log is encoded by `features.batch` and scored by the bundle's
compiled forest and calibrator (`ModelBundle.predict_frame`): the same probabilities as the
service's for the same rows (the service encodes one request with `features.online`, which
`tests/features/test_parity.py` holds to the batch encoder bit for bit, and scores the same
forest). One batch and its matrix are in memory at a time; each batch's scores are written at
once, so neither the log nor its scores are ever held whole.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import polars as pl

from features.bundle import ModelBundle
from features.logset import Batches

ID_COLUMNS: Final = ("request_id", "impression_id")


@dataclass(frozen=True)
class Scored:
    rows: int
    files: int
    seconds: float

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else float("nan")


def scored_batches(
    logs: Batches,
    ctr: ModelBundle,
    cvr: ModelBundle | None = None,
    *,
    threads: int = 2,
    ids: tuple[str, ...] = ID_COLUMNS,
) -> Iterator[pl.DataFrame]:
    """Per batch of `logs`: its `ids` columns, `pctr` and (with a cvr bundle) `pcvr`."""
    for i in range(len(logs)):
        batch = logs.batch(i)
        out = batch.select(ids).with_columns(pctr=pl.Series(ctr.predict_frame(batch, threads)))
        if cvr is not None:
            out = out.with_columns(pcvr=pl.Series(cvr.predict_frame(batch, threads)))
        yield out


def probabilities(logs: Batches, bundle: ModelBundle, threads: int = 2) -> np.ndarray:
    """One model's probabilities for every row in log order (8 bytes a row), scored batch by
    batch: what the replay needs, without the feature matrix of the whole log."""
    parts = [bundle.predict_frame(logs.batch(i), threads) for i in range(len(logs))]
    return np.concatenate(parts) if parts else np.empty(0)


def score_logs(
    logs: Batches,
    out: Path,
    ctr: ModelBundle,
    cvr: ModelBundle | None = None,
    *,
    threads: int = 2,
    on_batch: Callable[[int, int], None] | None = None,
) -> Scored:
    """Write `out/part-00000.parquet`, ... (one file per batch, in log order)."""
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    rows = files = 0
    for i, part in enumerate(scored_batches(logs, ctr, cvr, threads=threads)):
        part.write_parquet(out / f"part-{i:05d}.parquet", compression="zstd", compression_level=1)
        rows += part.height
        files += 1
        if on_batch is not None:
            on_batch(i + 1, len(logs))
    return Scored(rows, files, time.perf_counter() - start)


__all__ = ["ID_COLUMNS", "Scored", "probabilities", "score_logs", "scored_batches"]
