"""The `score` command: registered models' probabilities for every row of a log, streamed."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from training.cli_support import quiet_mlflow, user_errors


def score_command(
    logs: Annotated[
        Path, typer.Option(help="Logs to score: a file, a folder (e.g. date=... parts) or a glob.")
    ],
    out: Annotated[Path, typer.Option(help="New or empty folder for the scored Parquet parts.")],
    model: Annotated[
        str, typer.Option(help="The pCTR model: models:/NAME@ALIAS or models:/NAME/VERSION.")
    ] = "models:/bidopt-ctr@champion",
    cvr_model: Annotated[
        str | None, typer.Option(help="Also pCVR, e.g. models:/bidopt-cvr@champion.")
    ] = None,
    source: Annotated[str, typer.Option(help="Log format: auto, canonical, ipinyou, ...")] = "auto",
    threads: Annotated[int, typer.Option(min=1, help="Scoring threads.")] = 2,
) -> None:
    """Write pctr (and pcvr) next to each row's request_id and impression_id, batch by batch:
    the service's probabilities for the same rows, for logs of any size."""
    with user_errors():
        from features.logset import log_files

        log_files(logs)  # a missing path fails before the models load
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise ValueError(f"--out {out}: give a new or empty folder")
        quiet_mlflow()
        from training import tracking
        from training.pipeline import DataSource, load_data
        from training.score import score_logs

        tracking.connect()
        ctr = tracking.load_bundle(model)
        cvr = tracking.load_bundle(cvr_model) if cvr_model else None
        data, fp = load_data(DataSource(kind="logs", path=str(logs), source=source))
        done = score_logs(data, out, ctr, cvr, threads=threads)
    typer.echo(
        f"scored {done.rows:,} rows ({fp['rows_quarantined']:,} quarantined) into {done.files} "
        f"Parquet files under {out}: pctr{' and pcvr' if cvr else ''}, "
        f"{done.rows_per_s:,.0f} rows/s"
    )


def register_score(app: typer.Typer) -> None:
    app.command("score")(score_command)
