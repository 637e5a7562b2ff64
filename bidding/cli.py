"""Sub-commands owned by `bidding`: `bidopt campaigns check FILE`.

The only I/O in `bidding/`: read the file, hand its text to the pure loader, print. The same
loader runs when the service starts, so a file that passes here is a file the service accepts.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from bidding.campaigns import Campaign, CampaignError, load_campaigns


def _num(x: float) -> str:
    return f"{x:g}"


def _budget(c: Campaign) -> str:
    daily = f"{_num(c.daily_budget)}/day"
    return daily if c.total_budget is None else f"{daily}, {_num(c.total_budget)} total"


def _strategy(c: Campaign) -> str:
    if not c.strategy_params:
        return c.strategy
    params = ", ".join(f"{k}={_num(v)}" for k, v in c.strategy_params.items())
    return f"{c.strategy} ({params})"


def summary_table(campaigns: dict[str, Campaign], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for name, justify in (
        ("id", "left"),
        ("advertiser", "left"),
        ("goal", "left"),
        ("target", "right"),
        ("budget", "right"),
        ("strategy", "left"),
        ("creatives", "right"),
        ("rules", "right"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for c in campaigns.values():
        # Text, not markup: ids and names come from the file and may contain brackets.
        table.add_row(
            *(
                Text(x)
                for x in (
                    c.id,
                    c.advertiser or "-",
                    c.goal,
                    _num(c.target),
                    _budget(c),
                    _strategy(c),
                    str(len(c.creatives)),
                    str(len(c.rules)),
                )
            )
        )
    return table


def check(
    file: Path = typer.Argument(..., help="Campaigns TOML file to validate.", show_default=False),
) -> None:
    """Validate a campaigns file offline: a summary table, or every error one per line (exit 1)."""
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        typer.echo(f"{file}: cannot read: {reason}", err=True)
        raise typer.Exit(1) from None
    try:
        campaigns = load_campaigns(text, str(file))
    except CampaignError as exc:
        for line in exc.errors:
            typer.echo(line, err=True)
        raise typer.Exit(1) from None
    console = Console(width=max(Console().width, 120))
    console.print(summary_table(campaigns, f"{file}: {len(campaigns)} campaign(s), valid"))


def register(app: typer.Typer) -> None:
    """Add the `campaigns` command group to the `bidopt` app."""
    group = typer.Typer(
        name="campaigns",
        help="Campaigns file: validate it offline before the service loads it.",
        no_args_is_help=True,
    )
    group.command("check")(check)
    app.add_typer(group, name="campaigns")
