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


def test_test_window_scores_are_the_same_through_the_forest_or_lightgbm(small_logs, monkeypatch):
    """Small windows are scored by LightGBM, large ones by the compiled forest: the same numbers
    (raw scores bit-identical, probabilities within 1e-15), whichever threshold applies."""
    from features import bundle as bundle_module
    from tests.helpers.training import fast_config
    from training.pipeline import fit_bundle, split_for

    cfg = fast_config("ctr")
    split, _ = split_for(small_logs, cfg)
    bundle, *_ = fit_bundle(split, cfg)
    by_lightgbm = bundle.predict_frame(split.test, threads=2)
    assert "forest" not in bundle.__dict__  # a small window: LightGBM scored it
    monkeypatch.setattr(bundle_module, "FOREST_MIN_VISITS", 0)
    by_forest = bundle.predict_frame(split.test, threads=2)
    assert "forest" in bundle.__dict__
    np.testing.assert_allclose(by_forest, by_lightgbm, rtol=0, atol=1e-15)
    assert np.unique(by_forest).size > 10
