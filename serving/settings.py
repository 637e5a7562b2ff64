"""BidoptSettings: everything the service is configured with, read once at the edge.

The `serve` command builds one instance (CLI flags over `BIDOPT_*` environment variables over
defaults) and passes it to `create_app(settings)`; nothing below reads the environment again.
Importing this module touches neither disk nor network.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Final

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from features.store_uri import default_tracking_uri

# Values people paste from templates and tutorials; an admin key equal to one of them is no key.
WEAK_KEYS: Final = frozenset(
    {"changethis", "changeme", "change-me", "secret", "password", "admin", "apikey", "api-key"}
)
MIN_KEY_LENGTH: Final = 16
LOOPBACK: Final = "127.0.0.1"


def is_loopback(host: str) -> bool:
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


class BidoptSettings(BaseSettings):
    """Service settings; every field can be set as `BIDOPT_<FIELD>` in the environment."""

    model_config = SettingsConfigDict(env_prefix="BIDOPT_", extra="ignore", frozen=True)

    tracking_uri: str = Field(
        default="",
        description="MLflow tracking/registry URI; empty means the project rule "
        "(MLFLOW_TRACKING_URI, else sqlite:///<cwd>/mlruns/mlflow.db).",
    )
    ctr_model: str = Field(default="bidopt-ctr", min_length=1)
    cvr_model: str = Field(default="bidopt-cvr", min_length=1)
    alias: str = Field(default="champion", min_length=1, description="Registry alias to serve.")
    reload_interval_s: float = Field(
        default=30.0, gt=0, le=86_400, description="Seconds between background alias polls."
    )
    proof_timeout_s: float = Field(
        default=60.0,
        gt=0,
        le=3600,
        description="Seconds a new model version may take to load and score in its proof "
        "process (serving/models/proof.py) before it is refused.",
    )
    api_key: SecretStr | None = Field(
        default=None, description="Key for POST /admin/reload (header X-API-Key); unset = off."
    )
    max_impressions: int = Field(default=1000, ge=1, le=100_000)
    max_campaigns: int = Field(default=100, ge=1, le=10_000)
    max_body_bytes: int = Field(default=1 << 20, ge=1024)
    body_timeout_s: float = Field(
        default=5.0,
        gt=0,
        le=600,
        description="Seconds a request body may take to arrive in full; then 408.",
    )
    host: str = LOOPBACK
    port: int = Field(default=8000, ge=0, le=65_535)
    workers: int = Field(default=1, ge=1, le=64)
    campaigns_file: Path | None = Field(
        default=None,
        description="TOML campaigns file (bidding.campaigns); unset = inline campaigns only.",
    )
    redis_url: str | None = Field(
        default=None,
        description="Redis for spend, pacing, events and profiles; unset = in-process state "
        "(one worker only).",
    )
    ledger_dir: Path = Field(
        default=Path("ledger"),
        description="Directory of the ledger's segment files (every decision and event); "
        "relative to the working directory.",
    )
    ledger_flush_ms: float = Field(
        default=20.0,
        gt=0,
        le=60_000,
        description="Decisions are written at least this often (events: before their 200).",
    )
    ledger_compact_s: float = Field(
        default=600.0,
        ge=0,
        description="Seconds between compactions of the ledger's closed segments (Parquet and "
        "the start-up snapshot), each in a child process; 0 = never (run `bidopt ledger "
        "compact` yourself).",
    )
    nobid_sample_rate: float = Field(
        default=0.01,
        ge=0,
        le=1,
        description="Share of no-bid decisions kept in the ledger (each with this rate).",
    )
    pacing_interval_s: float = Field(
        default=60.0, gt=0, le=3600, description="Seconds between pacing controller steps."
    )
    state_refresh_s: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description="Seconds between reads of shared spend/pacing state and campaigns-file polls.",
    )
    account_currency: str = Field(
        default="USD",
        pattern=r"^[A-Z]{3}$",
        description="Currency of budgets, spend and the decision (ISO 4217).",
    )
    fx_file: Path | None = Field(
        default=None,
        description="FX reference rates CSV (bidding.fx: date,base,currency,rate), re-read when "
        "it changes; unset = the account currency only.",
    )
    openrtb_network_margin_ms: float = Field(default=10.0, ge=0, le=10_000)
    nurl_base: str | None = Field(
        default=None,
        description="Public base URL of this service for win notices; default "
        "http://127.0.0.1:<port>.",
    )
    winrate_file: Path | None = Field(
        default=None,
        description="Win-rate model JSON (WinRateModel.to_dict) for first-price shading; "
        "overrides a winrate.json in the CTR bundle.",
    )
    win_secret: SecretStr | None = Field(
        default=None,
        description="Key signing win-notice URLs; unset = a random key per start (the serve "
        "command shares one across workers).",
    )
    otel: bool = Field(
        default=False,
        description="FastAPI's native OpenTelemetry (spans and metrics through the globally "
        "configured providers). Off by default: Prometheus /metrics is the service's telemetry, "
        "and FastAPI otherwise checks the global providers on every request.",
    )
    control_dir: Path | None = Field(
        default=None,
        description="Directory the workers share to hear about /admin/reload; the serve command "
        "sets it when --workers > 1.",
    )

    @field_validator("api_key")
    @classmethod
    def _refuse_weak_key(cls, value: SecretStr | None) -> SecretStr | None:
        """A guessable admin key is worse than none: it looks protected and is not."""
        if value is None:
            return None
        key = value.get_secret_value()
        if not key:
            return None
        if key.strip().lower() in WEAK_KEYS:
            raise ValueError(
                f"BIDOPT_API_KEY is a placeholder value ({key!r}); set a random key, "
                'e.g. python -c "import secrets; print(secrets.token_urlsafe(32))"'
            )
        if len(key) < MIN_KEY_LENGTH:
            raise ValueError(f"BIDOPT_API_KEY must be at least {MIN_KEY_LENGTH} characters")
        return value

    @model_validator(mode="after")
    def _no_open_write_path(self) -> BidoptSettings:
        """Without a key, /v1/events moves money for anyone who can reach the port: loopback
        only, then."""
        if self.api_key is None and not is_loopback(self.host):
            raise ValueError(
                f"host {self.host!r} is not a loopback address and no BIDOPT_API_KEY is set: "
                "anyone reaching the port could post events and move budgets; set a key "
                "(header X-API-Key) or listen on 127.0.0.1"
            )
        return self

    @model_validator(mode="after")
    def _resolve_tracking_uri(self) -> BidoptSettings:
        if not self.tracking_uri.strip():
            object.__setattr__(self, "tracking_uri", default_tracking_uri())
        return self

    def model_uri(self, name: str) -> str:
        return f"models:/{name}@{self.alias}"

    def win_base_url(self) -> str:
        return (self.nurl_base or f"http://{LOOPBACK}:{self.port}").rstrip("/")
