"""Sub-commands owned by `bidding`: `bidopt campaigns check FILE`, `bidopt fx check FILE`.

The only I/O in `bidding/`: read the file, hand its text to the pure loader, print. The same
loaders run when the service starts, so a file that passes here is a file the service accepts.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from bidding.campaign_fx import load_in_account_currency
from bidding.campaigns import Campaign, CampaignError
from bidding.fx import FxError, FxTable, parse_fx


def _num(x: float) -> str:
    return f"{x:g}"


def _budget(c: Campaign) -> str:
    daily = f"{_num(c.daily_budget)}/day"
    return daily if c.total_budget is None else f"{daily}, {_num(c.total_budget)} total"


def _currency(c: Campaign) -> str:
    """Amounts are shown in the account currency; a converted campaign says from what."""
    return "-" if c.fx is None else f"{c.fx.currency} @ {c.fx.rate:.6g}"


def _strategy(c: Campaign) -> str:
    if c.rlb is not None:
        return f"rlb ({c.rlb.market}, {c.rlb.auctions_per_day:,} auctions/day)"
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
        ("currency", "left"),
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
                    _currency(c),
                )
            )
        )
    return table


def _read(file: Path, code: int) -> str:
    try:
        return file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        typer.echo(f"{file}: cannot read: {reason}", err=True)
        raise typer.Exit(code) from None


def check(
    file: Path = typer.Argument(..., help="Campaigns TOML file to validate.", show_default=False),
    fx: Path | None = typer.Option(
        None, help="FX file, for campaigns with their own currency (as BIDOPT_FX_FILE)."
    ),
    account_currency: str = typer.Option("USD", help="As BIDOPT_ACCOUNT_CURRENCY."),
) -> None:
    """Validate a campaigns file offline: a summary table, or every error one per line (exit 1)."""
    text = _read(file, 1)
    table = None
    if fx is not None:
        try:
            table = parse_fx(_read(fx, 1), str(fx))
        except FxError as exc:
            for line in exc.errors:
                typer.echo(line, err=True)
            raise typer.Exit(1) from None
    try:
        campaigns = load_in_account_currency(text, str(file), account_currency, table)
    except CampaignError as exc:
        for line in exc.errors:
            typer.echo(line, err=True)
        raise typer.Exit(1) from None
    console = Console(width=max(Console().width, 120))
    console.print(summary_table(campaigns, f"{file}: {len(campaigns)} campaign(s), valid"))


def fx_table(table: FxTable) -> Table:
    out = Table()
    out.add_column("currency")
    out.add_column(f"per 1 {table.base} on {table.last}", justify="right")
    out.add_column("low", justify="right")
    out.add_column("high", justify="right")
    rows = [table.by_day[d.toordinal()] for d in table.dates]
    for cur in sorted(table.currencies - {table.base}):
        series = [r[cur] for r in rows]
        out.add_row(cur, f"{series[-1]:.6g}", f"{min(series):.6g}", f"{max(series):.6g}")
    return out


def fx_check(
    file: Path = typer.Argument(..., help="FX rates file to validate.", show_default=False),
) -> None:
    """Validate an FX file offline: a summary table, or every problem one per line (exit 2)."""
    try:
        table = parse_fx(_read(file, 2), str(file))
    except FxError as exc:
        for line in exc.errors:
            typer.echo(line, err=True)
        raise typer.Exit(2) from None
    typer.echo(
        f"{file}: base {table.base}, {len(table.currencies) - 1} currencies, "
        f"{table.first} to {table.last} ({len(table.dates)} dates), valid"
    )
    Console(width=max(Console().width, 100)).print(fx_table(table))


def register(app: typer.Typer) -> None:
    """Add the `campaigns` and `fx` command groups to the `bidopt` app."""
    group = typer.Typer(
        name="campaigns",
        help="Campaigns file: validate it offline before the service loads it.",
        no_args_is_help=True,
    )
    group.command("check")(check)
    app.add_typer(group, name="campaigns")
    fx_group = typer.Typer(
        name="fx",
        help="FX reference rates file: validate it offline before the service loads it.",
        no_args_is_help=True,
    )
    fx_group.command("check")(fx_check)
    app.add_typer(fx_group, name="fx")
