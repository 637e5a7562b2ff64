"""The one tracking URI rule that training and serving both follow."""

from __future__ import annotations

from pathlib import Path

import pytest

from features.store_uri import default_tracking_uri


def test_bidopt_variable_then_mlflow_variable_then_sqlite_under_cwd(tmp_path: Path) -> None:
    env = {"BIDOPT_TRACKING_URI": "sqlite:///a.db", "MLFLOW_TRACKING_URI": "http://127.0.0.1:5000"}
    assert default_tracking_uri(tmp_path, env) == "sqlite:///a.db"
    env.pop("BIDOPT_TRACKING_URI")
    assert default_tracking_uri(tmp_path, env) == "http://127.0.0.1:5000"
    default = default_tracking_uri(tmp_path, {})
    assert default == f"sqlite:///{tmp_path.resolve()}/mlruns/mlflow.db"


def test_blank_variables_count_as_unset(tmp_path: Path) -> None:
    env = {"BIDOPT_TRACKING_URI": "  ", "MLFLOW_TRACKING_URI": " http://127.0.0.1:5000 "}
    assert default_tracking_uri(tmp_path, env) == "http://127.0.0.1:5000"
    assert default_tracking_uri(tmp_path, {k: "" for k in env}).endswith("/mlruns/mlflow.db")


def test_process_environment_and_working_directory_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BIDOPT_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    assert default_tracking_uri() == f"sqlite:///{tmp_path.resolve()}/mlruns/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////m/mlflow.db")
    assert default_tracking_uri() == "sqlite:////m/mlflow.db"
