"""Fixtures for training tests: small seeded synthetic logs with their fingerprint."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from tests.helpers.cli import clean_env, sqlite_uri

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


@pytest.fixture
def store(tmp_path: Path, mlflow_template: Path) -> tuple[str, dict[str, str]]:
    """A private SQLite store copy; (its URI, an environment for CLI subprocesses using it)."""
    db = tmp_path / "store" / "mlflow.db"
    db.parent.mkdir()
    shutil.copyfile(mlflow_template, db)
    uri = sqlite_uri(db)
    return uri, clean_env(BIDOPT_TRACKING_URI=uri)
