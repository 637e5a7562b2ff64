"""The mergeable counts behind a feature spec: counted in parts and merged in any order they
give the spec, and the out-of-fold lifts, that fitting the concatenated frame gives."""

from __future__ import annotations

import functools
import itertools

import numpy as np
import polars as pl
import pytest

from features.batch import encode_matrix
from features.spec_fit import (
    SpecCounts,
    count_batch,
    fit_spec,
    fold_bounds,
    fold_lifts_from_counts,
    oof_lift_given,
    out_of_fold_lifts,
    row_blocks,
    spec_from_counts,
)
from features.synth import generate

SPEC = {"min_count": 5, "max_vocab": 50, "max_segments": 20, "lift_prior": 30.0}


@pytest.fixture(scope="module")
def frame() -> pl.DataFrame:
    df = generate(12_000, seed=5)
    return df.with_columns(label=pl.col("click").fill_null(0).cast(pl.Int8))


def _parts(df: pl.DataFrame, cuts: list[int]) -> list[pl.DataFrame]:
    edges = [0, *cuts, df.height]
    return [df[lo:hi] for lo, hi in itertools.pairwise(edges)]


def _counted(df: pl.DataFrame, cuts: list[int], bounds: list[int]) -> list[SpecCounts]:
    out, offset = [], 0
    for part in _parts(df, cuts):
        blocks = row_blocks(offset, part.height, bounds)
        out.append(count_batch(part, label="label", lift_key="campaign_id", blocks=blocks))
        offset += part.height
    return out


def test_merged_counts_give_the_spec_of_the_whole_frame(frame: pl.DataFrame) -> None:
    whole = fit_spec(frame, label="label", lift_key="campaign_id", **SPEC)
    bounds = fold_bounds(frame.height, 5)
    parts = _counted(frame, [1, 3000, 3001, 7777], bounds)  # a one-row part, an empty-ish cut
    left = functools.reduce(SpecCounts.merge, parts)
    right = functools.reduce(lambda a, b: b.merge(a), reversed(parts))  # another tree
    tree = parts[0].merge(parts[1]).merge(parts[2].merge(parts[3].merge(parts[4])))
    for counts in (left, right, tree):
        assert counts.rows == frame.height
        spec = spec_from_counts(counts, lift_key="campaign_id", **SPEC)
        assert spec == whole
        assert spec.to_json() == whole.to_json()
    assert any(f.kind == "segment_lift" and f.lifts for f in whole.features)
    assert sum(len(f.vocab) for f in whole.features if f.kind == "category") > 50
    # without a label there is no lift column, as fit_spec
    plain = count_batch(frame).merge(count_batch(frame[:0]))
    assert spec_from_counts(plain, **SPEC) == fit_spec(frame, **SPEC)


def test_batch_wise_out_of_fold_lifts_equal_the_whole_frames(frame: pl.DataFrame) -> None:
    spec = fit_spec(frame, label="label", lift_key="campaign_id", **SPEC)
    bounds = fold_bounds(frame.height, 5)
    merged = functools.reduce(SpecCounts.merge, _counted(frame, [2500, 2600, 9000], bounds))
    assert merged.blocks == 5
    tables = fold_lifts_from_counts(merged, SPEC["lift_prior"], 5)
    whole = encode_matrix(frame, spec, given=out_of_fold_lifts(frame, spec, "label", folds=5))
    offset, parts = 0, []
    for part in _parts(frame, [2500, 2600, 9000]):  # parts straddle block bounds
        given = oof_lift_given(part, spec, tables, row_blocks(offset, part.height, bounds))
        parts.append(encode_matrix(part, spec, given=given))
        offset += part.height
    np.testing.assert_array_equal(np.concatenate(parts), whole)  # bit for bit, NaNs included
    # a negative control: in-sample lifts differ from the out-of-fold column
    i = next(i for i, f in enumerate(spec.features) if f.kind == "segment_lift")
    assert not np.array_equal(encode_matrix(frame, spec)[:, i], whole[:, i])


def test_bad_counts_input_is_named() -> None:
    df = generate(500, seed=1).with_columns(label=pl.lit(0))
    with pytest.raises(ValueError, match="lift_key: 'nope' is not a category source"):
        count_batch(df, label="label", lift_key="nope")
    with pytest.raises(ValueError, match="blocks has 3 entries, the frame 500 rows"):
        count_batch(df, label="label", lift_key="campaign_id", blocks=np.zeros(3, np.int32))
    a = count_batch(df, label="label", lift_key="campaign_id")
    with pytest.raises(ValueError, match="cannot merge counts for lift_key"):
        a.merge(count_batch(df))
    with pytest.raises(ValueError, match="empty training window"):
        spec_from_counts(count_batch(df[:0]))
