from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from serving.settings import BidoptSettings, default_tracking_uri


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("BIDOPT_TRACKING_URI", "MLFLOW_TRACKING_URI", "BIDOPT_API_KEY", "BIDOPT_PORT"):
        monkeypatch.delenv(var, raising=False)


def test_tracking_uri_rule(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    assert BidoptSettings().tracking_uri == f"sqlite:///{tmp_path.resolve()}/mlruns/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////m/mlflow.db")
    assert BidoptSettings().tracking_uri == "sqlite:////m/mlflow.db"
    monkeypatch.setenv("BIDOPT_TRACKING_URI", "sqlite:////b/mlflow.db")
    assert BidoptSettings().tracking_uri == "sqlite:////b/mlflow.db"
    assert default_tracking_uri() == "sqlite:////b/mlflow.db"
    assert BidoptSettings(tracking_uri="http://127.0.0.1:5000").tracking_uri.startswith("http")


def test_defaults_and_env_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    s = BidoptSettings()
    assert (s.ctr_model, s.cvr_model, s.alias) == ("bidopt-ctr", "bidopt-cvr", "champion")
    assert (s.reload_interval_s, s.max_impressions, s.max_body_bytes) == (30.0, 1000, 1 << 20)
    assert (s.host, s.workers, s.api_key) == ("127.0.0.1", 1, None)
    monkeypatch.setenv("BIDOPT_PORT", "9001")
    assert BidoptSettings().port == 9001
    assert s.otel is False  # FastAPI's native OpenTelemetry is opt-in
    monkeypatch.setenv("BIDOPT_OTEL", "true")
    assert BidoptSettings().otel is True
    assert s.model_uri("bidopt-ctr") == "models:/bidopt-ctr@champion"


@pytest.mark.parametrize("weak", ["changethis", "ChangeMe", "secret", "short-key"])
def test_weak_api_keys_are_refused(weak: str) -> None:
    with pytest.raises(ValidationError, match="api_key"):
        BidoptSettings(api_key=weak)


def test_strong_api_key_is_kept_secret() -> None:
    s = BidoptSettings(api_key="x" * 8 + "-strong-key-123")
    assert s.api_key is not None
    assert "strong" not in repr(s)


@pytest.mark.parametrize(
    ("field", "value"),
    [("reload_interval_s", 0), ("max_impressions", 0), ("workers", 0), ("port", 70000)],
)
def test_out_of_range_values_are_refused(field: str, value: int) -> None:
    with pytest.raises(ValidationError, match=field):
        BidoptSettings(**{field: value})
