"""Pipeline pieces that need no MLflow: the pCVR oracle's window share, the data source record."""

from __future__ import annotations

import numpy as np
import pytest

from features.synth_truth import conversion_delay_seconds
from training.pipeline import DataSource, window_share


@pytest.mark.parametrize("days", [1.0, 3.0, 7.0, 30.0])
def test_window_share_matches_the_generator(days):
    delays = conversion_delay_seconds(np.random.default_rng(0), 400_000)
    empirical = float(np.mean(delays <= days * 86400))
    assert window_share(days) == pytest.approx(empirical, abs=0.005)


def test_data_source_round_trips_through_the_fingerprint():
    src = DataSource(kind="logs", path="/data/x.parquet", source="ipinyou")
    fp = {k: str(v) for k, v in src.params().items()}  # MLflow params come back as text
    assert DataSource.from_fingerprint(fp) == src
    with pytest.raises(ValueError, match="does not record its data source"):
        DataSource.from_fingerprint({})
