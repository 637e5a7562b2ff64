"""The `serve` sub-command: settings from flags and BIDOPT_* variables, then uvicorn.

One worker runs the app object built here. Several workers are separate processes that build
their own app from the environment (`create_app_from_env`), so the resolved settings are
exported as BIDOPT_* variables first; the command also gives them a fresh prometheus-client
multiprocess directory (so /metrics aggregates all workers) and a shared control directory (so
/admin/reload reaches all workers).
"""

from __future__ import annotations

import copy
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import SecretStr

from serving.settings import BidoptSettings


def build_settings(**overrides: Any) -> BidoptSettings:
    """Flags that were given override the environment; a bad value is a one-line error."""
    from pydantic import ValidationError

    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return BidoptSettings(**given)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}"
            for err in e.errors()
        )
        typer.echo(f"error: invalid settings: {problems}", err=True)
        raise typer.Exit(2) from None


def log_config() -> dict[str, Any]:
    """uvicorn's logging, plus our own `bidopt.*` loggers on the same handler."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["bidopt"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    return config


def _export(settings: BidoptSettings) -> None:
    """Every field of BidoptSettings as BIDOPT_<FIELD>, so a worker builds the same settings
    (derived from the model, so a new setting cannot be forgotten here)."""
    for name in BidoptSettings.model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if value is not None:
            os.environ[f"BIDOPT_{name.upper()}"] = str(value)


def _multiprocess_dir() -> Path:
    """prometheus-client needs the directory empty at start-up (stale files would be summed)."""
    from serving.metrics import MULTIPROC_ENV

    existing = os.environ.get(MULTIPROC_ENV, "").strip()
    if existing:
        path = Path(existing)
        path.mkdir(parents=True, exist_ok=True)
        for f in path.glob("*.db"):
            f.unlink()
        return path
    path = Path(tempfile.mkdtemp(prefix="bidopt-metrics-"))
    os.environ[MULTIPROC_ENV] = str(path)
    return path


def check_startup(settings: BidoptSettings) -> None:
    """Refuse to start, with one line per reason and no traceback, on what cannot work."""
    if settings.workers > 1 and not settings.redis_url:
        typer.echo(
            f"error: --workers {settings.workers} needs --redis-url (BIDOPT_REDIS_URL): without "
            "shared state each worker would spend the whole budget",
            err=True,
        )
        raise typer.Exit(2)
    fx = None
    if settings.fx_file is not None:
        from bidding.fx import FxError
        from serving.state.fx import read_fx

        try:
            fx = read_fx(settings.fx_file)
        except FxError as e:
            typer.echo(f"error: invalid FX file {settings.fx_file}:", err=True)
            for line in e.errors:
                typer.echo(line, err=True)
            raise typer.Exit(2) from None
    if settings.campaigns_file is not None:
        from bidding.campaigns import CampaignError
        from serving.state.campaigns import read_campaigns

        try:
            read_campaigns(settings.campaigns_file, settings.account_currency, fx)
        except CampaignError as e:
            typer.echo(f"error: invalid campaigns file {settings.campaigns_file}:", err=True)
            for line in e.errors:
                typer.echo(line, err=True)
            raise typer.Exit(2) from None
    if settings.winrate_file is not None:
        from serving.models.registry import read_winrate

        try:
            read_winrate(settings.winrate_file)
        except ValueError as e:
            typer.echo(f"error: invalid win-rate file {settings.winrate_file}: {e}", err=True)
            raise typer.Exit(2) from None


def serve(settings: BidoptSettings) -> None:
    import uvicorn

    check_startup(settings)

    common: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_config": log_config(),
        "access_log": False,  # per-request logging would cost more than scoring
        # no X-Forwarded-* rewriting of the client address (nothing here reads it: one
        # middleware layer less per request) and no `server: uvicorn` header
        "proxy_headers": False,
        "server_header": False,
        "timeout_graceful_shutdown": 10,
    }
    if settings.workers == 1:
        from serving.app import create_app

        uvicorn.run(create_app(settings), **common)
        return
    made: list[Path] = []
    if settings.win_secret is None:  # one key for every worker, so any of them checks a notice
        import secrets

        settings = settings.model_copy(update={"win_secret": SecretStr(secrets.token_urlsafe(32))})
    if settings.control_dir is None:
        control = Path(tempfile.mkdtemp(prefix="bidopt-control-"))
        made.append(control)
        settings = settings.model_copy(update={"control_dir": control})
    metrics_dir = _multiprocess_dir()
    if not os.environ.get("BIDOPT_KEEP_METRICS_DIR"):
        made.append(metrics_dir)
    _export(settings)
    try:
        uvicorn.run(
            "serving.app:create_app_from_env",
            factory=True,
            workers=settings.workers,
            **common,
        )
    finally:
        for path in made:
            shutil.rmtree(path, ignore_errors=True)


def register(app: typer.Typer) -> None:
    """Add this package's commands to the top-level `bidopt` app."""

    @app.command("serve")
    def serve_command(
        host: Annotated[
            str | None,
            typer.Option(help="Address to listen on (env BIDOPT_HOST; default 127.0.0.1)"),
        ] = None,
        port: Annotated[
            int | None, typer.Option(help="Port (env BIDOPT_PORT; default 8000)")
        ] = None,
        workers: Annotated[
            int | None,
            typer.Option(
                help="Worker processes, each loading both models (env BIDOPT_WORKERS; default 1)"
            ),
        ] = None,
        tracking_uri: Annotated[
            str | None,
            typer.Option(
                help="MLflow tracking URI (env BIDOPT_TRACKING_URI, else MLFLOW_TRACKING_URI, "
                "else sqlite:///./mlruns/mlflow.db)"
            ),
        ] = None,
        alias: Annotated[
            str | None,
            typer.Option(help="Registry alias to serve (env BIDOPT_ALIAS; default champion)"),
        ] = None,
        reload_interval_s: Annotated[
            float | None,
            typer.Option(
                "--reload-interval",
                help="Seconds between alias polls (env BIDOPT_RELOAD_INTERVAL_S; default 30)",
            ),
        ] = None,
        campaigns: Annotated[
            Path | None,
            typer.Option(
                "--campaigns",
                help="TOML campaigns file (env BIDOPT_CAMPAIGNS_FILE); the service refuses to "
                "start if it is invalid",
            ),
        ] = None,
        redis_url: Annotated[
            str | None,
            typer.Option(
                help="Redis URL for shared budgets, pacing, events and profiles (env "
                "BIDOPT_REDIS_URL); required for --workers > 1"
            ),
        ] = None,
    ) -> None:
        """Serve pCTR, pCVR and bid prices over HTTP from the registered champion models.

        Other settings come from the environment: BIDOPT_CTR_MODEL, BIDOPT_CVR_MODEL,
        BIDOPT_API_KEY (enables POST /admin/reload), BIDOPT_MAX_IMPRESSIONS,
        BIDOPT_MAX_BODY_BYTES, BIDOPT_PACING_INTERVAL_S, BIDOPT_ACCOUNT_CURRENCY,
        BIDOPT_OPENRTB_NETWORK_MARGIN_MS, BIDOPT_NURL_BASE, BIDOPT_WINRATE_FILE, BIDOPT_FX_FILE,
        BIDOPT_OTEL.
        """
        settings = build_settings(
            host=host,
            port=port,
            workers=workers,
            tracking_uri=tracking_uri,
            alias=alias,
            reload_interval_s=reload_interval_s,
            campaigns_file=campaigns,
            redis_url=redis_url,
        )
        serve(settings)

    ledger = typer.Typer(help="The service's ledger of decisions and events.", no_args_is_help=True)
    ledger.command("compact")(ledger_compact)
    app.add_typer(ledger, name="ledger")


def ledger_compact(
    ledger: Annotated[
        Path, typer.Option(help="The ledger directory (the service's BIDOPT_LEDGER_DIR)")
    ] = Path("ledger"),
    quiet_if_busy: Annotated[
        bool,
        typer.Option(
            help="Exit 0 silently if another compaction is running; say nothing if nothing was new"
        ),
    ] = False,
) -> None:
    """Compact the ledger's closed segments to Parquet (by date and hour), fold them into the
    start-up snapshot, and remove their segment files. Safe while the service runs."""
    from serving.state.compaction import CompactionBusy, run_compaction

    try:
        report = run_compaction(ledger)
    except CompactionBusy as exc:
        if quiet_if_busy:
            return
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    except (FileNotFoundError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if report.compacted.compacted or report.folded.folded or not quiet_if_busy:
        typer.echo(report.line())


def main() -> None:
    """`python -m serving.cli serve ...`: the same command without the other packages."""
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    register(app)

    @app.callback()
    def _root() -> None:
        """bidopt serving commands."""

    app(sys.argv[1:])


if __name__ == "__main__":
    main()
