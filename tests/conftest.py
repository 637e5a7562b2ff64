"""Shared fixtures: a real MLflow SQLite store per test, and one store trained by the real CLI.

A fresh SQLite store runs MLflow's schema migrations (seconds); copying one migrated file per
test is far faster. The template has no experiment of ours, so every test creates its own
`bidopt` experiment with its artifacts under its own tmp_path.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers.cli import bidopt_command, clean_env, sqlite_uri

QUICKSTART_ROWS = 40_000


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated, empty SQLite store file (tracking and registry tables)."""
    from mlflow import MlflowClient

    db = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    client = MlflowClient(tracking_uri=sqlite_uri(db), registry_uri=sqlite_uri(db))
    client.search_experiments()
    client.search_registered_models()
    return db


@pytest.fixture
def mlflow_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mlflow_template: Path) -> str:
    """A private copy of the template store; BIDOPT_TRACKING_URI points at it for this test."""
    import mlflow

    db = tmp_path / "mlruns" / "mlflow.db"
    db.parent.mkdir(parents=True)
    shutil.copyfile(mlflow_template, db)
    uri = sqlite_uri(db)
    monkeypatch.setenv("BIDOPT_TRACKING_URI", uri)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


@pytest.fixture(scope="session")
def trained_store(
    tmp_path_factory: pytest.TempPathFactory, mlflow_template: Path
) -> tuple[str, Path]:
    """Run the real `bidopt quickstart --rows 40000` once; returns (tracking_uri, workdir).

    It runs in `workdir` with no tracking URI in the environment, so it also exercises the
    default rule (`<cwd>/mlruns/mlflow.db`). Both models have a champion and a challenger.
    """
    workdir = tmp_path_factory.mktemp("trained-store")
    db = workdir / "mlruns" / "mlflow.db"
    db.parent.mkdir()
    shutil.copyfile(mlflow_template, db)
    cmd = [*bidopt_command(), "quickstart", "--rows", str(QUICKSTART_ROWS), "--seed", "7"]
    proc = subprocess.run(
        cmd, cwd=workdir, env=clean_env(), capture_output=True, text=True, timeout=600, check=False
    )
    if proc.returncode != 0:
        pytest.fail(f"quickstart failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    (workdir / "quickstart.out").write_text(proc.stdout)
    return sqlite_uri(db), workdir
