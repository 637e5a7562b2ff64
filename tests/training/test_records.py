"""Request dicts <-> canonical frames: what the pyfunc model and the input example rely on."""

from __future__ import annotations

import math

import numpy as np
import pytest

from training.records import frame_from_records, request_examples


def test_round_trip_keeps_the_encoding(small_logs):
    from features.batch import encode_matrix
    from features.spec_fit import fit_spec

    rows = small_logs.head(50)
    spec = fit_spec(small_logs, min_count=5)
    back = frame_from_records(request_examples(rows, 50))
    np.testing.assert_array_equal(encode_matrix(back, spec), encode_matrix(rows, spec))


def test_missing_and_loosely_typed_fields():
    df = frame_from_records(
        [
            {"event_time": "2024-03-04T10:00:00Z", "slot_width": 300.0, "user_segments": None},
            {"event_time": "2024-03-04T11:00:00", "floor_price": 2, "user_imps_24h": math.nan},
        ]
    )
    assert df.height == 2
    assert df["slot_width"].to_list() == [300, None]
    assert df["floor_price"].to_list() == [None, 2.0]
    assert df["user_imps_24h"].to_list() == [None, None]
    assert str(df["event_time"].dtype) == "Datetime(time_unit='us', time_zone='UTC')"


def test_bad_field_is_named():
    with pytest.raises(ValueError, match="row 1: field event_time: cannot read 'yesterday'"):
        frame_from_records([{"event_time": "2024-03-04T10:00:00"}, {"event_time": "yesterday"}])
    with pytest.raises(ValueError, match="field slot_width"):
        frame_from_records([{"event_time": "2024-03-04T10:00:00", "slot_width": "wide"}])
