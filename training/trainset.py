"""The training window as LightGBM reads it: encoded batch by batch, never as one matrix.

LightGBM keeps only its binned Dataset (about a byte per feature per row, less for sparse
segment flags); the float64 matrix of all training rows (8 bytes per feature per row) is what
made training fall over near 12M rows. `lightgbm.Sequence` is LightGBM's public way to build
the Dataset from parts: it first reads the rows it samples for the bin bounds (the same sample
as from a matrix: `LGBM_SampleIndices` with the same seed), then each part in order. Each part
here is one batch of the log, encoded when LightGBM asks for it by `features.batch`, the same
transform as for a frame in memory, with the out-of-fold lifts of its blocks. One encoded
batch is alive at a time.

The sample is where LightGBM's own Sequence reader is slow: it asks for its 200,000 rows one
at a time from Python, and each first touch of a part encodes the whole part, so every batch
was encoded twice (once to sample it, once to push it): 6.1 s of Dataset against 1.5 s from a
matrix at 1M rows (bench/train_scaling.py). `BatchDataset` reads the same sampled rows (the
indices LightGBM drew) batch by batch, encoding only those rows; the encoding is row-wise, so
they are the rows of the whole batch's matrix bit for bit (tests/training/test_windows.py,
with a sample smaller than the window). It overrides `Dataset._yield_row_from_seqlist`,
LightGBM's private row reader: pyproject pins LightGBM's minor version for this and for
serving's fast path.

One difference from a Dataset built from a matrix, LightGBM's own: building from a Sequence it
pre-filters features (`feature_pre_filter`: a feature that cannot split is left out) with the
default min_data_in_leaf (20), not the configured one (`Dataset.get_params` does not pass
min_data_in_leaf on), so segment flags too rare to split under bidopt's 500 stay in the
Dataset instead of being dropped. They still never split; they only take part in
feature_fraction's draws, so the forests differ slightly. At min_data_in_leaf 20 the two
Datasets, and the forests, are identical (tests/training/test_windows.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import lightgbm as lgb
import numpy as np

from features.batch import encode_matrix
from features.spec import FeatureSpec
from features.spec_fit import LiftCell, blocks_of, oof_lift_given
from training.batch_fit import TrainRows


@dataclass
class BatchEncoder:
    """Encodes the training rows of one log batch, or chosen rows of it; keeps the last batch
    (LightGBM asks for rows of a batch in order)."""

    windows: TrainRows
    spec: FeatureSpec
    tables: list[tuple[LiftCell, ...]]
    bounds: list[int]
    offsets: np.ndarray  # training row offset of each batch
    index: int = -1
    matrix: np.ndarray = field(default_factory=lambda: np.empty((0, 0)))

    def _encode(self, i: int, local: np.ndarray | None) -> np.ndarray:
        rows = self.windows.train_batch(i)
        if local is not None:
            rows = rows[local]
        where = int(self.offsets[i]) + (np.arange(rows.height) if local is None else local)
        given = oof_lift_given(rows, self.spec, self.tables, blocks_of(where, self.bounds))
        return encode_matrix(rows, self.spec, given=given)

    def batch(self, i: int, rows: int) -> np.ndarray:
        if self.index != i:
            self.matrix = np.empty((0, 0))  # free the previous batch first
            x = self._encode(i, None)
            if x.shape[0] != rows:
                raise ValueError(f"batch {i}: {x.shape[0]} rows, expected {rows}")
            self.index, self.matrix = i, x
        return self.matrix

    def rows(self, i: int, local: np.ndarray) -> np.ndarray:
        """The encoded rows `local` (indices into batch i's training rows), in that order."""
        return self._encode(i, local)

    def release(self) -> None:
        self.index, self.matrix = -1, np.empty((0, 0))


class EncodedBatch(lgb.Sequence):
    """Training rows of one log batch, encoded on demand."""

    def __init__(self, index: int, rows: int, encoder: BatchEncoder):
        self.index = index
        self.rows = rows
        self.batch_size = rows  # LightGBM pushes each batch in one piece
        self.encoder = encoder

    def __getitem__(self, idx: int | slice) -> np.ndarray:  # type: ignore[override]
        return self.encoder.batch(self.index, self.rows)[idx]

    def __len__(self) -> int:
        return self.rows


def sampled_rows(parts: list[EncodedBatch], indices: np.ndarray) -> np.ndarray:
    """The rows at `indices` (increasing, over the concatenated parts), batch by batch."""
    starts = np.cumsum([0, *(len(p) for p in parts)])
    which = np.searchsorted(starts, indices, side="right") - 1
    out: list[np.ndarray] = []
    for k in np.unique(which):
        part = parts[int(k)]
        out.append(part.encoder.rows(part.index, indices[which == k] - starts[k]))
    return np.concatenate(out) if out else np.empty((0, 0))


class BatchDataset(lgb.Dataset):
    """`lgb.Dataset` whose bin sample is read from `EncodedBatch` parts in one pass (module
    docstring); other Sequences are read by LightGBM's own row loop."""

    def _yield_row_from_seqlist(  # type: ignore[override]
        self, seqs: list[lgb.Sequence], indices: Iterable[int]
    ) -> Iterator[np.ndarray]:
        if seqs and all(isinstance(s, EncodedBatch) for s in seqs):
            yield from sampled_rows(seqs, np.asarray(indices, dtype=np.int64))  # type: ignore[arg-type]
        else:
            yield from lgb.Dataset._yield_row_from_seqlist(seqs, indices)


def encoded_batches(
    windows: TrainRows,
    spec: FeatureSpec,
    tables: list[tuple[LiftCell, ...]],
    bounds: list[int],
) -> list[EncodedBatch]:
    """One Sequence per log batch holding training rows."""
    offsets = np.concatenate([[0], np.cumsum(windows.train_per_batch)]).astype(int)
    encoder = BatchEncoder(windows, spec, tables, bounds, offsets)
    return [EncodedBatch(i, n, encoder) for i, n in enumerate(windows.train_per_batch) if n]


def release(batches: list[EncodedBatch]) -> None:
    """Drop the cached encoded batch once the Dataset is built."""
    if batches:
        batches[0].encoder.release()


__all__ = ["BatchDataset", "EncodedBatch", "encoded_batches", "release", "sampled_rows"]
