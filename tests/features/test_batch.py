"""The batch encoder's matrix: segment indicators, lifts, and columns given by the caller."""

from __future__ import annotations

import math

import numpy as np
import polars as pl

from features.batch import encode_matrix
from features.spec import Feature, FeatureSpec


def test_encode_matrix_takes_given_columns_instead_of_computing_them() -> None:
    df = pl.DataFrame(
        {
            "campaign_id": ["a", "b", None],
            "user_segments": [["s1", "s1", "s9"], [], None],
            "floor_price": [1.0, None, 3.0],
            "slot_width": [None] * 3,
            "slot_height": [None] * 3,
        }
    )
    lift = Feature("seglift", "segment_lift", "campaign_id", (), (("a", "s1", 0.5),))
    spec = FeatureSpec(
        features=(
            Feature("seg_s1", "segment", "user_segments", ("s1",)),
            lift,
            Feature("floor_price", "numeric", "floor_price"),
            Feature("seg_s2", "segment", "user_segments", ("s2",)),
        )
    )
    x = encode_matrix(df, spec)
    # a listed segment counts once as an indicator, but its lift once per listing (as online)
    expected = [[1.0, 1.0, 1.0, 0.0], [0.0, 0.0, math.nan, 0.0], [0.0, math.nan, 3.0, 0.0]]
    np.testing.assert_array_equal(x, np.array(expected))
    given = encode_matrix(df, spec, given={1: np.array([7.0, 8.0, 9.0])})
    np.testing.assert_array_equal(given[:, 1], [7.0, 8.0, 9.0])
    np.testing.assert_array_equal(np.delete(given, 1, axis=1), np.delete(x, 1, axis=1))
    assert given.flags.c_contiguous and given.dtype == np.float64
