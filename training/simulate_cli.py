"""The `simulate` command: replay logged auctions under several strategies and budgets."""

from __future__ import annotations

import functools
import math
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from training.cli_support import quiet_mlflow, user_errors

DEFAULT_STRATEGIES = "linear,ortb1,ortb2,lagrangian,constant"
DEFAULT_FRACTIONS = "1/32,1/16,1/8,1/4,1/2"
# Above this many rows a log is replayed on a systematic sample (--max-auctions): the replay
# holds about 525 bytes per auction (bench/simulate_scaling.py), so 10M is ~5 GB.
MAX_AUCTIONS = 10_000_000


def _plot(table: object, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import polars as pl

    assert isinstance(table, pl.DataFrame)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name in table["strategy"].unique(maintain_order=True).to_list():
        part = table.filter(pl.col("strategy") == name).sort("budget_fraction")
        style = "--" if name.endswith("@truth") else "-"
        ax.plot(part["budget_fraction"], part["clicks"], style, marker="o", label=name)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("budget fraction of the replayed window's market total")
    ax.set_ylabel("clicks won")
    ax.set_title("Replay: clicks against budget (dashed: true probabilities)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def simulate_command(
    logs: Annotated[
        Path | None,
        typer.Option(help="Logs to replay (a file, folder or glob); default: synthetic."),
    ] = None,
    rows: Annotated[int, typer.Option(help="Synthetic rows when no --logs.")] = 300_000,
    seed: Annotated[int, typer.Option(help="Synthetic seed.")] = 0,
    strategies: Annotated[str, typer.Option(help="Comma-separated strategy names.")] = (
        DEFAULT_STRATEGIES
    ),
    budget_fractions: Annotated[
        str, typer.Option(help="Comma-separated budget fractions in (0, 1], e.g. 1/16,1/8.")
    ] = DEFAULT_FRACTIONS,
    replay_fraction: Annotated[
        float, typer.Option(help="Latest share of the logs that is replayed; the rest fits.")
    ] = 0.3,
    fit_logs: Annotated[
        Path | None, typer.Option(help="Separate, earlier logs to fit strategies on.")
    ] = None,
    pctr_column: Annotated[
        str | None, typer.Option(help="Take pCTR from this column instead of the ctr model.")
    ] = None,
    pcvr_column: Annotated[
        str | None, typer.Option(help="Take pCVR from this column instead of the cvr model.")
    ] = None,
    goal: Annotated[
        str | None,
        typer.Option(
            help="max_clicks, max_conversions, cpc, cpa, roas or cpm; default: max_clicks, "
            "or cpc when --target is given."
        ),
    ] = None,
    target: Annotated[
        float | None, typer.Option(help="The goal's target (CPC, CPA, ROAS, CPM); max_* take none.")
    ] = None,
    episode_length: Annotated[
        int | None, typer.Option(help="Split the budget into episodes of N auctions.")
    ] = None,
    episode_column: Annotated[
        str | None,
        typer.Option(help="Episodes from this id column (RLB benchmark rules for every strategy)."),
    ] = None,
    train_info: Annotated[
        Path | None,
        typer.Option(
            help="RLB train-info JSON: budget per auction = its cpm_train / 1000, and its "
            "market-price histogram for rlb."
        ),
    ] = None,
    max_bid: Annotated[float, typer.Option(help="Cap on every bid (CPM).")] = math.inf,
    alias: Annotated[str, typer.Option(help="Registry alias of the models to score with.")] = (
        "champion"
    ),
    max_auctions: Annotated[
        int,
        typer.Option(
            help="Replay at most about this many rows of each log: a larger log keeps every "
            "k-th row of each batch (a systematic sample in log order), so memory is bounded "
            "whatever its size; 0 keeps every row. Not with episodes (replayed whole)."
        ),
    ] = MAX_AUCTIONS,
) -> None:
    """Replay the test window in time order under each strategy and budget (iPinYou style),
    log one MLflow run per simulation with a nested run per (strategy, budget), print a table."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    with user_errors():
        fractions = [f.strip() for f in budget_fractions.split(",") if f.strip()]
        names = [s.strip() for s in strategies.split(",") if s.strip()]
        if not names:
            raise ValueError("--strategies: name at least one strategy")
        if not fractions:
            raise ValueError("--budget-fractions: give at least one fraction in (0, 1]")
        from bidding.replay import parse_budget_fraction
        from bidding.strategies import strategy_name

        for name in names:  # fail on a typo before loading and scoring the logs
            strategy_name(name)
        for f in fractions:
            parse_budget_fraction(f)
        if episode_length is not None and episode_length <= 0:
            raise ValueError(f"--episode-length: must be a positive integer, got {episode_length}")
        if goal is None:
            goal = "cpc" if target is not None else "max_clicks"
        from bidding.goals import goal_value

        goal_value(goal, target)  # a goal/target mismatch fails before the logs load
        info = None
        if train_info is not None:
            from features.adapters.rlb_episodes import read_train_info

            info = read_train_info(train_info)
        quiet_mlflow()
        from training import simulate as sim

        if max_auctions < 0:
            raise ValueError(
                f"--max-auctions: must be 0 (every row) or positive, got {max_auctions}"
            )
        episodic = episode_column is not None or episode_length is not None
        extra = (pctr_column, pcvr_column, episode_column)
        cap = functools.partial(_load, max_rows=max_auctions, episodic=episodic)
        batches, df = cap(logs, rows, seed, extra)
        fit_batches, fit_df = cap(fit_logs, rows, seed, extra) if fit_logs else (None, None)
        every = max(getattr(b, "k", 1) for b in (batches, fit_batches) if b is not None)
        if every > 1:
            console.print(
                f"[yellow]note:[/] the logs hold more than --max-auctions {max_auctions:,} "
                f"rows: every {every}th row of each batch is replayed"
            )
        probs = _probabilities(batches, df, pctr_column, pcvr_column, goal, alias)
        fit_probs = (
            _probabilities(fit_batches, fit_df, pctr_column, pcvr_column, goal, alias)
            if fit_df is not None
            else None
        )
        episodes = _episodes(df, episode_column)
        fit_episodes = _episodes(fit_df, episode_column) if fit_df is not None else None
        result = sim.simulate(
            df, probs, strategies=names, fractions=fractions, replay_fraction=replay_fraction,
            fit_df=fit_df, fit_probs=fit_probs, goal=goal, target=target,
            episode_length=episode_length, max_bid=max_bid, seed=seed, episodes=episodes,
            fit_episodes=fit_episodes, train_info=info,
        )  # fmt: skip
        result.params["sample_every"] = every  # 1: every row replayed
        table = result.table()
        for w in result.warnings:
            console.print(f"[yellow]warning:[/] {w}")
        out = Table(title=f"Replay of {result.params['replay_auctions']:,} auctions")
        truth = table["expected_clicks"].is_not_null().any()
        cols = ["strategy", "budget", "bids", "wins", "clicks", "conv.", "spend", "spent", "eCPC"]
        for col in [*cols, "exp. clicks"] if truth else cols:
            out.add_column(col, justify="left" if col == "strategy" else "right", no_wrap=True)
        for r in table.iter_rows(named=True):
            cells = [
                r["strategy"], f"{r['budget_fraction']:.4g}", f"{r['bids']:,}", f"{r['wins']:,}",
                f"{r['clicks']:.0f}", f"{r['conversions']:.0f}", f"{r['spend']:,.1f}",
                "-" if r["spend_share"] != r["spend_share"] else f"{r['spend_share']:.0%}",
                "-" if r["ecpc"] != r["ecpc"] else f"{r['ecpc']:,.2f}",
            ]  # fmt: skip
            if truth:
                cells.append(f"{r['expected_clicks']:.1f}")
            out.add_row(*cells)
        console.print(out)
        from training import tracking

        with tempfile.TemporaryDirectory(prefix="bidopt-sim-") as tmp:
            csv = Path(tmp) / "simulation.csv"
            table.write_csv(csv)
            png = _plot(table, Path(tmp) / "clicks_vs_budget.png")
            run_id = tracking.log_simulation(
                params=result.params, rows=table.to_dicts(), table_csv=csv, plot_png=png
            )
        console.print(f"MLflow run {run_id} (experiment 'bidopt'), nested runs per strategy.")


# What the replay reads of each row (training/simulate.py); the model features are read from
# the batches while they are scored, so the replay holds these columns only.
REPLAY_COLUMNS = (
    "event_time", "channel", "exchange", "market_price", "paying_price", "bid_price", "won",
    "auction_type", "floor_price", "click", "conversion", "true_ctr", "true_cvr",
)  # fmt: skip


def _load(
    path: Path | None,
    rows: int,
    seed: int,
    columns: tuple[str | None, ...] = (),
    *,
    max_rows: int = 0,
    episodic: bool = False,
) -> tuple[object, object]:
    """The validated logs as batches (to score) and their replay columns as one frame; above
    `max_rows` rows, every k-th row of each batch (`logset.EveryKth`), which an episodic
    replay refuses."""
    from features.logset import EveryKth, collect
    from training.pipeline import DataSource, load_data

    src = DataSource(kind="logs", path=str(path)) if path else DataSource(rows=rows, seed=seed)
    logs, fp = load_data(src)
    sample = None
    if 0 < max_rows < logs.rows:
        if episodic:
            raise ValueError(
                f"--max-auctions: {logs.rows:,} rows with episodes, which are replayed whole: "
                f"raise --max-auctions above that or set it to 0"
            )
        sample = EveryKth.of(logs, -(-logs.rows // max_rows))
    present = set(logs.batch(0).columns)
    wanted = dict.fromkeys(c for c in (*REPLAY_COLUMNS, *columns) if c and c in present)
    frame = collect(sample or logs, list(wanted))
    wanted = [c for c in columns if c and c not in frame.columns]
    if path is not None and wanted:
        if sample is not None:  # attached to every row, then sampled (not bounded)
            frame = collect(logs, list(frame.columns))
            frame = _attach_columns(path, frame, wanted, fp.get("quarantine_path"))
            frame = frame.filter(sample.mask())
        else:
            frame = _attach_columns(path, frame, wanted, fp.get("quarantine_path"))
    return sample or logs, frame


def _attach_columns(path: Path, frame: object, names: list[str], quarantine: str | None) -> object:
    """Ingest keeps only canonical columns, so a probability column scored elsewhere is read
    back from the file, row for row, minus the rows ingest quarantined (it keeps file order).
    A value that is not a number becomes NaN, which `probability_column` then reports."""
    import polars as pl

    from features.ingest import read_raw

    assert isinstance(frame, pl.DataFrame)
    raw = read_raw(path, str(path))
    present = [c for c in names if c in raw.columns]
    if not present:
        return frame  # probability_column names the missing column
    cols = raw.select(pl.col(c).cast(pl.Float64, strict=False) for c in present)
    if quarantine is not None:
        q = Path(quarantine)
        bad = (pl.read_parquet(q) if q.suffix == ".parquet" else pl.read_csv(q))["row_number"]
        keep = ~pl.int_range(1, raw.height + 1, eager=True).is_in(bad.cast(pl.Int64).implode())
        cols = cols.filter(keep)
    if cols.height != frame.height:
        raise ValueError(
            f"--logs {path}: cannot line up column(s) {', '.join(present)} with the "
            f"{frame.height} usable rows ({cols.height} rows after the quarantined ones)"
        )
    return frame.with_columns(cols.get_columns())


def _probabilities(
    logs: object,
    df: object,
    pctr_column: str | None,
    pcvr_column: str | None,
    goal: str,
    alias: str,
) -> object:
    import polars as pl

    from training import simulate as sim

    assert isinstance(df, pl.DataFrame)
    needs_cvr = goal in ("cpa", "roas", "max_conversions")
    sources = []
    if pctr_column:
        pctr = sim.probability_column(df, pctr_column)
        sources.append(f"column:{pctr_column}")
    else:
        pctr = _model(logs, "ctr", alias)
        sources.append(f"bidopt-ctr@{alias}")
    pcvr = None
    if pcvr_column:
        pcvr = sim.probability_column(df, pcvr_column)
        sources.append(f"column:{pcvr_column}")
    elif needs_cvr:
        pcvr = _model(logs, "cvr", alias)
        sources.append(f"bidopt-cvr@{alias}")
    return sim.Probabilities(pctr, pcvr, "+".join(sources))


def _episodes(df: object, column: str | None) -> object:
    """Episode ids per row, from a column read back from the file (ingest keeps only canonical
    columns); a missing column or a missing id is named."""
    import numpy as np
    import polars as pl

    if column is None:
        return None
    assert isinstance(df, pl.DataFrame)
    if column not in df.columns:
        raise ValueError(f"--episode-column {column!r}: not in the logs")
    ids = df[column].cast(pl.Float64, strict=False).to_numpy()
    bad = ~np.isfinite(ids)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"--episode-column {column!r}: {int(bad.sum())} ids not numbers (row {i})")
    return ids


def _model(logs: object, target: str, alias: str) -> object:
    from training import tracking

    tracking.connect()
    name = tracking.MODEL_NAMES[target]
    bundle = tracking.load_bundle(f"models:/{name}@{alias}")
    from training.score import probabilities

    # batch by batch from the staged logs (`bidopt score`'s path): neither the feature matrix
    # nor the feature columns of the whole log are held
    return probabilities(logs, bundle)  # type: ignore[arg-type]


def register_simulate(app: typer.Typer) -> None:
    app.command("simulate")(simulate_command)
