"""Sub-commands owned by `features`: `bidopt synth`.

The command only wraps `features.synth.generate` and a Parquet write; it checks the output
path before the work starts, so a typo costs a second, not a full generation.
"""

from __future__ import annotations

import os
from pathlib import Path

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


def synth(
    rows: int = typer.Option(
        100_000, "--rows", min=1, help="Number of auctions (log rows) to generate."
    ),
    seed: int = typer.Option(
        0, "--seed", min=0, help="Random seed: the same seed gives the same log and the same truth."
    ),
    out: Path = typer.Option(
        DEFAULT_OUT, "--out", help="Parquet file to write (parent folders are created)."
    ),
    days: int = typer.Option(14, "--days", min=1, help="Days of traffic the log spans."),
) -> None:
    """Generate a seeded synthetic ad log with its true click and conversion rates."""
    from features.synth import STEPS, generate, write_parquet  # heavy: only when run

    target = _check_out(out)
    console = Console(stderr=True)
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
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
    clicks = int(won["click"].sum())
    conv = int(won["conversion"].sum())
    ctr = clicks / max(won.height, 1)
    cvr = conv / max(clicks, 1)
    typer.echo(
        f"wrote {df.height:,} rows to {target}: won {won.height / df.height:.1%}, "
        f"click rate {ctr:.2%} ({clicks:,} clicks), conversion rate {cvr:.2%} of clicks "
        f"({conv:,}), seed {seed}, {days} days"
    )


def register(app: typer.Typer) -> None:
    """Add this package's commands to the top-level `bidopt` app."""
    app.command("synth")(synth)
