"""Fixtures for training tests: small seeded synthetic logs with their fingerprint."""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest

SMALL_ROWS, SMALL_SEED = 30_000, 3


@pytest.fixture(scope="session")
def small_data() -> tuple[pl.DataFrame, dict[str, Any]]:
    """Synthetic logs as `bidopt train --rows 30000 --seed 3` would load them."""
    from features.logset import collect
    from training.pipeline import DataSource, load_data

    logs, fp = load_data(DataSource(kind="synth", rows=SMALL_ROWS, seed=SMALL_SEED))
    return collect(logs), fp  # load_data gives batches; these tests want the frame


@pytest.fixture(scope="session")
def small_logs(small_data) -> pl.DataFrame:
    return small_data[0]
