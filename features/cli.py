"""Sub-commands owned by `features`: `bidopt synth` and `bidopt logs build`.

The command only wraps `features.synth.generate` and a Parquet write; it checks the output
path before the work starts, so a typo costs a second, not a full generation.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import orjson
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

DEFAULT_OUT = Path("data/synth.parquet")


def _check_out(out: Path) -> Path:
    """Create the parent folder and make sure a file can be written there, or say why not."""
    if out.is_dir():
        raise typer.BadParameter(f"{out} is a directory; give a file path", param_hint="--out")
    for folder in out.parents:
        if folder.exists():
            if not folder.is_dir():
                raise typer.BadParameter(f"{folder} is a file, not a folder", param_hint="--out")
            break
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise typer.BadParameter(
            f"cannot create {out.parent}: {reason}", param_hint="--out"
        ) from None
    if not os.access(out.parent, os.W_OK):
        raise typer.BadParameter(f"{out.parent} is not writable", param_hint="--out")
    return out


def _check_out_dir(out: Path) -> Path:
    """A new or empty folder for a partitioned log: mixing two logs' files would be one log."""
    if out.exists() and not out.is_dir():
        raise typer.BadParameter(f"{out} is a file, not a folder", param_hint="--out")
    if out.is_dir() and any(out.iterdir()):
        raise typer.BadParameter(
            f"{out} is not empty; give a new or empty folder", param_hint="--out"
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise typer.BadParameter(
            f"cannot create {out}: {exc.strerror or exc}", param_hint="--out"
        ) from None
    if not os.access(out, os.W_OK):
        raise typer.BadParameter(f"{out} is not writable", param_hint="--out")
    return out


def synth(
    rows: int = typer.Option(
        100_000, "--rows", min=1, help="Number of auctions (log rows) to generate."
    ),
    seed: int = typer.Option(
        0, "--seed", min=0, help="Random seed: the same seed gives the same log and the same truth."
    ),
    out: Path = typer.Option(
        DEFAULT_OUT,
        "--out",
        help=(
            "A .parquet file (generated in memory), or a folder: a Parquet dataset partitioned "
            "by date, generated part by part in bounded memory (any --rows)."
        ),
    ),
    days: int = typer.Option(14, "--days", min=1, help="Days of traffic the log spans."),
    part_rows: int = typer.Option(
        1_000_000, "--part-rows", min=1, help="Rows per generated part (folder output)."
    ),
) -> None:
    """Generate a seeded synthetic ad log with its true click and conversion rates."""
    if out.suffix.lower() != ".parquet" or out.is_dir():
        _synth_dataset(rows, seed, _check_out_dir(out), days, part_rows)
        return
    from features.synth import STEPS, generate, write_parquet  # heavy: only when run

    target = _check_out(out)
    with _progress() as progress:
        task = progress.add_task("world", total=len(STEPS) + 1)

        def step(name: str) -> None:
            progress.update(task, description=name, advance=0 if name == STEPS[0] else 1)

        df = generate(rows, seed=seed, days=days, on_step=step)
        progress.update(task, description="writing parquet", advance=1)
        try:
            write_parquet(df, target)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise typer.BadParameter(
                f"cannot write {target}: {reason}", param_hint="--out"
            ) from None
        progress.update(task, advance=1)
    won = df.filter("won")
    clicks, conv = int(won["click"].sum()), int(won["conversion"].sum())
    _summary(f"{df.height:,} rows to {target}", df.height, won.height, clicks, conv, seed, days)


def _progress() -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )


def _synth_dataset(rows: int, seed: int, out: Path, days: int, part_rows: int) -> None:
    from features.synth_parts import part_sizes, write_dataset

    with _progress() as progress:
        task = progress.add_task("parts", total=len(part_sizes(rows, part_rows)))
        try:
            s = write_dataset(
                out,
                rows,
                seed=seed,
                days=days,
                part_rows=part_rows,
                on_part=lambda done, _total: progress.update(task, completed=done),
            )
        except OSError as exc:
            raise typer.BadParameter(
                f"cannot write under {out}: {exc.strerror or exc}", param_hint="--out"
            ) from None
    where = f"{s.rows:,} rows in {len(s.files)} Parquet files under {out}"
    _summary(where, s.rows, s.won, s.clicks, s.conversions, seed, days)


def _summary(where: str, rows: int, won: int, clicks: int, conv: int, seed: int, days: int) -> None:
    typer.echo(
        f"wrote {where}: won {won / rows:.1%}, click rate {clicks / max(won, 1):.2%} "
        f"({clicks:,} clicks), conversion rate {conv / max(clicks, 1):.2%} of clicks "
        f"({conv:,}), seed {seed}, {days} days"
    )


def _time(value: str | None, flag: str) -> datetime | None:
    if value is None:
        return None
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not an ISO-8601 time", param_hint=flag) from None
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def logs_build(
    ledger: Path = typer.Option(..., "--ledger", help="The service's ledger directory."),
    out: Path = typer.Option(..., "--out", help="Parquet file of the canonical impression log."),
    since: str | None = typer.Option(None, "--since", help="Decisions from this time (ISO)."),
    until: str | None = typer.Option(None, "--until", help="Decisions before this time (ISO)."),
    attribution_days: float = typer.Option(
        7.0, "--attribution-days", min=0, help="Conversions count this long after the click."
    ),
) -> None:
    """Join the ledger's decisions with their wins, clicks and conversions into training logs."""
    from features.ingest import write_csv
    from features.ledger_logs import build_logs

    if not ledger.is_dir():
        raise typer.BadParameter(f"{ledger} is not a directory", param_hint="--ledger")
    target = _check_out(out)
    result = build_logs(
        ledger,
        since=_time(since, "--since"),
        until=_time(until, "--until"),
        attribution_days=attribution_days,
    )
    result.frame.write_parquet(target)
    aside = []
    if result.rows_quarantined:
        q = target.with_suffix(".quarantine.csv")
        write_csv(result.quarantined, q)
        aside.append(
            f"quarantine: {q} ({', '.join(f'{k} {v}' for k, v in result.reasons.items())})"
        )
    if result.unmatched:
        u = target.with_suffix(".unmatched.jsonl")
        u.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in result.unmatched))
        aside.append(f"unmatched events: {u}")
    frame = result.frame
    typer.echo(
        f"{result.decisions_in:,} bid decisions in = {result.rows_out:,} rows out + "
        f"{result.rows_quarantined:,} quarantined; won {int(frame['won'].sum()):,}, clicks "
        f"{int(frame['click'].sum()):,}, conversions {int(frame['conversion'].sum()):,}; "
        f"events matched {result.events_matched:,}, unmatched {len(result.unmatched):,}, "
        f"conversions outside the window {result.conversions_outside_window:,}; sampled no-bid "
        f"decisions (not rows) {result.nobid_decisions:,}; ledger records "
        f"{result.ledger.records:,}"
        + (f", torn bytes skipped {result.ledger.torn_bytes}" if result.ledger.torn_bytes else "")
    )
    typer.echo(f"wrote {target}" + "".join(f"; {a}" for a in aside))


def register(app: typer.Typer) -> None:
    """Add this package's commands to the top-level `bidopt` app."""
    app.command("synth")(synth)
    logs = typer.Typer(help="Training logs from the service's ledger.", no_args_is_help=True)
    logs.command("build")(logs_build)
    app.add_typer(logs, name="logs")
