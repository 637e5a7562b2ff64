"""Fitting the segment-lift feature: its cells by hand, and the out-of-fold fill of training
rows."""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import polars as pl
import pytest

from features.batch import encode_matrix
from features.spec import LIFT_QUANTUM, Feature, FeatureSpec
from features.spec_fit import fit_lifts, fold_lifts, out_of_fold_lifts


def test_segment_lift_cells_hand_computed() -> None:
    df = pl.DataFrame(
        {
            "campaign_id": ["c1", "c1", "c1", "c1", "c2", None],
            "user_segments": [["s"], ["s"], ["t"], [], ["s"], ["s"]],
            "label": [1, 0, 0, 0, 0, 1],
        }
    )
    # c1 rate 1/4; cell (c1, s): (1 + 2 * 0.25) / (2 + 2) = 0.375 -> ln(1.5); (c1, t): ln(2/3).
    # c2 has no click (no rate to lift from) and the row without a key is not counted.
    cells = fit_lifts(df, "campaign_id", "label", prior=2.0)
    q = LIFT_QUANTUM
    assert cells == (
        ("c1", "s", round(math.log(1.5) / q) * q),
        ("c1", "t", round(math.log(2 / 3) / q) * q),
    )
    with pytest.raises(ValueError, match=r"^lift_prior: must be > 0"):
        fit_lifts(df, "campaign_id", "label", prior=0.0)


def test_out_of_fold_lifts_never_see_their_own_label() -> None:
    rng = np.random.default_rng(3)
    n = 5000
    df = pl.DataFrame(
        {
            "campaign_id": rng.choice(["a", "b", "c"], n).tolist(),
            "user_segments": [[f"s{j}" for j in rng.choice(6, 2, replace=False)] for _ in range(n)],
            "label": (rng.random(n) < 0.1).astype(int).tolist(),
            "slot_width": [None] * n,
            "slot_height": [None] * n,
        }
    )
    lift = Feature("seglift", "segment_lift", "campaign_id", (), ())
    spec = FeatureSpec(features=(lift,), params={"lift_prior": 50.0})
    oof = out_of_fold_lifts(df, spec, "label")[0]
    flipped = df.with_columns(
        pl.when(pl.int_range(pl.len()) < n // 5)
        .then(1 - pl.col("label"))
        .otherwise("label")
        .alias("label")
    )
    again = out_of_fold_lifts(flipped, spec, "label")[0]
    first = slice(0, n // 5)
    np.testing.assert_array_equal(oof[first], again[first])  # own block's labels unused
    assert not np.array_equal(oof[n // 5 :], again[n // 5 :])  # the others' labels are used
    full = dataclasses.replace(lift, lifts=fit_lifts(df, "campaign_id", "label", 50.0))
    in_sample = encode_matrix(df, FeatureSpec((full,)))[:, 0]
    assert not np.array_equal(oof, in_sample)


def test_fold_lifts_equal_refitting_on_the_other_blocks() -> None:
    """The one-pass tables (block counts subtracted from the totals) are the cells that
    `fit_lifts` learns on each complement, including keys and cells that a block holds alone,
    rows without a key or label, and empty or missing segment lists."""
    rng = np.random.default_rng(11)
    n = 3000
    keys = rng.choice(["a", "b", "c", "d", None], n, p=[0.4, 0.3, 0.2, 0.05, 0.05]).tolist()
    keys[:40] = ["only-in-first-block"] * 40
    segments = [
        None if i % 97 == 0 else [f"s{j}" for j in rng.choice(7, i % 4, replace=False)]
        for i in range(n)
    ]
    labels = [None if i % 89 == 0 else int(rng.random() < 0.15) for i in range(n)]
    df = pl.DataFrame({"campaign_id": keys, "user_segments": segments, "label": labels})
    bounds = [0, 500, 1400, 1401, 3000]
    tables = fold_lifts(df, "campaign_id", "label", 20.0, bounds)
    assert len(tables) == 4
    for (lo, hi), cells in zip(itertools.pairwise(bounds), tables, strict=True):
        rest = pl.concat([df[:lo], df[hi:]])
        assert cells == fit_lifts(rest, "campaign_id", "label", 20.0)
    assert not any(k == "only-in-first-block" for k, _, _ in tables[0])
    with pytest.raises(ValueError, match=r"bounds cover 10 rows, the frame has 3000"):
        fold_lifts(df, "campaign_id", "label", 20.0, [0, 10])
