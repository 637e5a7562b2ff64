"""The `train`, `promote` and `quickstart` sub-commands: thin wrappers over the library.

mlflow and lightgbm are imported inside the commands so that `bidopt --help` stays fast. Bad
input ends with one line on stderr and exit code 2; a refused promotion exits with 1.
"""

from __future__ import annotations

import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from training.cli_support import errors, quiet_mlflow, user_errors
from training.score_cli import register_score
from training.simulate_cli import register_simulate

console = Console()


class TargetName(StrEnum):
    ctr = "ctr"
    cvr = "cvr"


LogsOpt = Annotated[
    Path | None,
    typer.Option(
        help=(
            "Logs: a file (Parquet, CSV/TSV, optionally gzipped), a folder of them (e.g. "
            "date=... partitions) or a quoted glob; default: synthetic logs."
        )
    ),
]
SourceOpt = Annotated[
    str, typer.Option(help="Log format: auto, canonical, ipinyou or ipinyou_ctr.")
]
RowsOpt = Annotated[int, typer.Option(help="Synthetic rows to generate when no --logs is given.")]
SeedOpt = Annotated[int, typer.Option(help="Seed of the synthetic generator.")]
ConfigOpt = Annotated[
    Path | None, typer.Option("--config", help="TOML file overriding training/defaults.toml.")
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override one setting, e.g. --set learning_rate=0.1 (repeatable)."),
]
DaskOpt = Annotated[
    str | None,
    typer.Option(
        "--dask",
        help="Train on a Dask cluster: tcp://host:8786, or local:N to start N local workers "
        "(--logs: partitioned Parquet).",
    ),
]

# A million impressions over four weeks: about 8,000 clicks, of which the three weeks whose
# attribution window has closed give pCVR a test window with some 250 conversions (500,000 rows
# over 14 days gave 18); the newest week still trains pCVR through cvr.delay. About two and a
# half minutes on two cores, most of it the pCTR model.
QUICKSTART_ROWS = 1_000_000
QUICKSTART_DAYS = 28

SHOWN_METRICS = (
    "logloss", "oracle_logloss", "oracle_gap", "auc", "oracle_auc", "ne", "ece", "ece_rel",
    "calibration_ratio", "rows", "positives",
)  # fmt: skip


class _RichReporter:
    """Pipeline steps and boosting rounds on one rich progress display."""

    def __init__(self, progress: Progress, label: str) -> None:
        from training.pipeline import STEPS

        self.progress = progress
        self.label = label
        self.steps = STEPS
        self.task = progress.add_task(f"{label}: starting", total=len(STEPS))
        self.rounds = progress.add_task(f"{label}: boosting", total=None, visible=False)
        self.done = 0

    def step(self, name: str) -> None:
        if name in self.steps:
            self.progress.update(self.task, completed=self.steps.index(name))
        self.progress.update(self.task, description=f"{self.label}: {name}")
        if name == "fit":
            self.progress.update(self.rounds, visible=True)
        elif self.progress.tasks[self.rounds].visible:
            self.progress.update(self.rounds, visible=False)

    def iteration(self, done: int, total: int) -> None:
        self.progress.update(self.rounds, completed=done, total=total)

    def finish(self) -> None:
        self.progress.update(
            self.task, completed=len(self.steps), description=f"{self.label}: done"
        )


def _progress() -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


def _load(
    logs: Path | None, source: str, rows: int, seed: int, progress: Progress, days: int = 14
) -> tuple:
    from training.pipeline import DataSource, load_data

    if logs is not None:
        src = DataSource(kind="logs", path=_resolved(logs), source=source)
        label = f"loading {logs}"
    else:
        src = DataSource(kind="synth", rows=rows, seed=seed, days=days)
        label = f"generating {rows:,} synthetic rows over {days} days"
    task = progress.add_task(label, total=None)
    frame, fp = load_data(src)
    progress.update(task, total=1, completed=1)
    return frame, fp


def _check_logs(logs: Path | None) -> None:
    """Fail before any work on a --logs that names no file (file, folder or glob)."""
    if logs is not None:
        from features.logset import log_files

        log_files(logs)  # a LogError naming the path


def _resolved(logs: Path) -> str:
    """An absolute --logs (file, folder or glob), so the run records where the data were."""
    text = str(logs)
    return text if Path(text).is_absolute() else str(Path.cwd() / text)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if value != value:  # NaN
            return "-"
        return f"{value:,.0f}" if abs(value) >= 1000 or value.is_integer() else f"{value:.5f}"
    return "-" if value is None else str(value)


def _metrics_table(title: str, columns: dict[str, dict[str, float]]) -> Table:
    table = Table(title=title)
    table.add_column("metric")
    for name in columns:
        table.add_column(name, justify="right")
    for metric in SHOWN_METRICS:
        if any(metric in m for m in columns.values()):
            table.add_row(metric, *(_fmt(m.get(metric)) for m in columns.values()))
    return table


def _train(target: str, logs: Path | None, source: str, rows: int, seed: int,
           config: Path | None, overrides: list[str] | None,
           dask: str | None = None) -> None:  # fmt: skip
    with user_errors():
        from training.config import load_config

        cfg = load_config(target, config, overrides or [])  # type: ignore[arg-type]
        if dask is not None:
            if source not in ("auto", "canonical"):
                raise ValueError(f"--dask reads canonical Parquet logs, not --source {source}")
            _train_dask(cfg, logs, dask)
            return
        _check_logs(logs)
        quiet_mlflow()
        from training import pipeline, tracking

        uri = tracking.connect()
        with _progress() as progress:
            frame, fp = _load(logs, source, rows, seed, progress)
            rep = _RichReporter(progress, f"train {target}")
            outcome = pipeline.train(frame, fp, cfg, reporter=rep)
            rep.finish()
    _report(target, outcome, fp, uri)


def _train_dask(cfg: Any, logs: Path | None, address: str) -> None:
    from training.cluster import connect, parse_address

    parse_address(address)  # a bad address fails before anything starts
    if logs is None:
        raise ValueError("--dask needs --logs: a folder (or glob) of Parquet files")
    quiet_mlflow()
    from training import dask_train, tracking

    uri = tracking.connect()
    timeout = float(cfg.section("dask")["connect_timeout_s"])
    with _progress() as progress:
        task = progress.add_task(f"connecting to Dask ({address})", total=None)
        with connect(address, connect_timeout_s=timeout) as cluster:
            info = cluster.info
            progress.update(task, total=1, completed=1)
            rep = _RichReporter(progress, f"train {cfg.target} on Dask")
            outcome, fp = dask_train.train(cluster, logs, cfg, reporter=rep)
            rep.finish()
    console.print(
        f"engine: dask {info.scheduler}, {info.workers} workers, {info.threads} threads, "
        f"{info.memory_bytes / 2**30:.1f} GB",
        highlight=False,
        soft_wrap=True,
    )
    _report(cfg.target, outcome, fp, uri)


def _report(target: str, outcome: Any, fp: dict[str, Any], uri: str) -> None:
    console.print(
        f"data: {fp['source']}, {fp['rows_used']:,} rows used of {fp['rows_in']:,}, "
        f"{fp['rows_quarantined']:,} quarantined"
        + (f" ({fp['quarantine_path']})" if fp.get("quarantine_path") else ""),
        highlight=False,
        soft_wrap=True,
    )
    console.print(_metrics_table(f"bidopt-{target} on the test window", {target: outcome.metrics}))
    for note in outcome.notes:
        console.print(f"[yellow]note:[/yellow] {note}", highlight=False)
    v = outcome.version
    console.print(
        f"registered [bold]{v.name}[/bold] version {v.version} (alias challenger), "
        f"run {v.run_id}, calibration {outcome.calibration.method}, "
        f"{outcome.fit.best_iteration} trees; store {uri}",
        highlight=False,
        soft_wrap=True,
    )
    console.print(f"next: bidopt promote {target}")


def _promote_table(decision: Any) -> Table:
    champ = f"champion v{decision.champion_version}"
    chal = f"challenger v{decision.challenger_version}"
    return _metrics_table(
        f"bidopt-{decision.target}: both versions on the newest test window",
        {champ: decision.champion, chal: decision.challenger},
    )


def register(app: typer.Typer) -> None:
    """Add `train ctr|cvr`, `promote`, `quickstart` and `simulate` to the top-level `bidopt` app."""
    train_app = typer.Typer(
        help="Train a calibrated pCTR or pCVR model, log the run and register a version.",
        no_args_is_help=True,
    )

    @train_app.command("ctr")
    def train_ctr(
        logs: LogsOpt = None,
        source: SourceOpt = "auto",
        rows: RowsOpt = 500_000,
        seed: SeedOpt = 0,
        config: ConfigOpt = None,
        set_: SetOpt = None,
        dask: DaskOpt = None,
    ) -> None:
        """pCTR: P(click | impression shown), on shown impressions split by time."""
        _train("ctr", logs, source, rows, seed, config, set_, dask)

    @train_app.command("cvr")
    def train_cvr(
        logs: LogsOpt = None,
        source: SourceOpt = "auto",
        rows: RowsOpt = 500_000,
        seed: SeedOpt = 0,
        config: ConfigOpt = None,
        set_: SetOpt = None,
        dask: DaskOpt = None,
    ) -> None:
        """pCVR: P(conversion within the attribution window | click), on matured clicks."""
        _train("cvr", logs, source, rows, seed, config, set_, dask)

    app.add_typer(train_app, name="train")

    @app.command("promote")
    def promote_cmd(
        target: Annotated[TargetName, typer.Argument(help="Which model: ctr or cvr.")],
        max_ece_rel: Annotated[
            float | None, typer.Option(help="Bound on the challenger's ece_rel (default 0.1).")
        ] = None,
        logs: Annotated[
            Path | None,
            typer.Option(help="Score on this log's test window instead of the challenger's data."),
        ] = None,
        config: ConfigOpt = None,
    ) -> None:
        """Move `champion` to the challenger if it is at least as good on the same test window."""
        with user_errors():
            from training.config import load_config
            from training.promote import promote

            cfg = load_config(target.value, config)  # type: ignore[arg-type]
            bound = cfg.max_ece_rel if max_ece_rel is None else max_ece_rel
            _check_logs(logs)
            quiet_mlflow()
            with console.status(f"re-scoring bidopt-{target.value} champion and challenger"):
                decision = promote(target.value, max_ece_rel=bound, logs=logs)  # type: ignore[arg-type]
        if decision.champion:
            console.print(_promote_table(decision))
        for note in decision.notes:
            console.print(f"[yellow]note:[/yellow] {note}", highlight=False)
        if decision.promoted:
            console.print(
                f"[green]promoted[/green] bidopt-{target.value} v{decision.challenger_version} "
                f"to champion: {decision.reason}",
                highlight=False,
                soft_wrap=True,
            )
        elif decision.champion_version == decision.challenger_version:
            console.print(f"nothing to do: {decision.reason}", highlight=False)
        else:
            errors.print(
                f"[red]refused[/red]: bidopt-{target.value} v{decision.challenger_version} stays "
                f"challenger, champion stays v{decision.champion_version}: {decision.reason}",
                highlight=False,
                soft_wrap=True,
            )
            raise typer.Exit(1)

    @app.command("quickstart")
    def quickstart(
        rows: Annotated[int, typer.Option(help="Synthetic rows to generate.")] = QUICKSTART_ROWS,
        seed: SeedOpt = 0,
        days: Annotated[int, typer.Option(help="Days the synthetic logs span.")] = QUICKSTART_DAYS,
    ) -> None:
        """Generate synthetic logs, train and promote pCTR and pCVR, print what to do next."""
        _quickstart(rows, seed, days)

    register_simulate(app)
    register_score(app)


def _quickstart(rows: int, seed: int, days: int = QUICKSTART_DAYS) -> None:
    start = time.perf_counter()
    with user_errors():
        from training import pipeline, tracking
        from training.config import load_config
        from training.promote import promote

        if rows <= 0:
            raise ValueError(f"--rows must be positive, got {rows}")
        if days <= 0:
            raise ValueError(f"--days must be positive, got {days}")
        quiet_mlflow()
        uri = tracking.connect()
        outcomes, decisions = {}, {}
        with _progress() as progress:
            frame, fp = _load(None, "auto", rows, seed, progress, days)
            for target in ("ctr", "cvr"):
                cfg = load_config(target)  # type: ignore[arg-type]
                rep = _RichReporter(progress, f"train {target}")
                outcomes[target] = pipeline.train(frame, fp, cfg, reporter=rep)
                rep.finish()
                decisions[target] = promote(target, max_ece_rel=cfg.max_ece_rel, frame=frame)  # type: ignore[arg-type]
    columns = {t: o.metrics for t, o in outcomes.items()}
    console.print(
        _metrics_table("test-window metrics against the oracle (true probabilities)", columns)
    )
    versions = Table(title="MLflow registry")
    for col in ("model", "new version", "champion", "promotion"):
        versions.add_column(col)
    for target, outcome in outcomes.items():
        d = decisions[target]
        champ = d.challenger_version if d.promoted else (d.champion_version or "-")
        versions.add_row(outcome.version.name, outcome.version.version, champ, d.reason)
    console.print(versions)
    for target, outcome in outcomes.items():
        for note in outcome.notes:
            console.print(f"[yellow]note ({target}):[/yellow] {note}", highlight=False)
    elapsed = time.perf_counter() - start
    console.print(f"done in {elapsed:.0f} s; tracking store {uri}", highlight=False, soft_wrap=True)
    console.print(
        f"browse runs:   mlflow ui --backend-store-uri {uri}", highlight=False, soft_wrap=True
    )
    console.print("start service: bidopt serve", highlight=False)
