"""The replay simulator's orchestration: logs → auction arrays → fitted strategies → results.

The bidding arithmetic is `bidding.replay` (the one bid function serving calls too); this module
only decides which rows are auctions, where probabilities come from, and which window fits and
which replays. Only won impressions are replayed, as in the iPinYou benchmark: they are the rows
whose market price and click outcome the log knows. Strategy parameters and the win-rate model
are fitted on the earlier window, never on the replayed one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from bidding.goals import goal_value
from bidding.replay import AuctionLog, make_log, replay_grid
from bidding.strategies import strategy_name
from bidding.winrate import WinRateModel, segment_key

TRUTH_SUFFIX = "@truth"
MARKET_COLUMNS = ("market_price", "paying_price")
TABLE_COLUMNS = (
    "strategy", "budget_fraction", "auctions", "bids", "wins", "clicks", "conversions", "spend",
    "ecpc", "ecpa", "ctr", "win_rate", "exhausted_fraction", "expected_clicks",
)  # fmt: skip


class SimulationError(ValueError):
    """A one-line reason the simulation cannot run (named column, strategy or fraction)."""


@dataclass(frozen=True)
class Probabilities:
    """pCTR (and optionally pCVR) per row of the whole log, plus where they came from."""

    pctr: np.ndarray
    pcvr: np.ndarray | None
    source: str


@dataclass
class SimulationResult:
    rows: list[dict[str, Any]]
    params: dict[str, Any]
    warnings: list[str] = field(default_factory=list)

    def table(self) -> pl.DataFrame:
        return pl.DataFrame(self.rows).select(TABLE_COLUMNS)


def market_prices(df: pl.DataFrame) -> pl.Series:
    """The market price of each row: the logged market price, else what a won second-price
    auction paid (iPinYou's payprice); null where the log cannot know it."""
    cols = df.columns
    if "market_price" not in cols and "paying_price" not in cols:
        raise SimulationError("logs have no price column (market_price or paying_price)")
    market = df["market_price"] if "market_price" in cols else pl.Series([None] * df.height)
    paid = df["paying_price"] if "paying_price" in cols else pl.Series([None] * df.height)
    second = df["auction_type"] != "first" if "auction_type" in cols else True
    return market.fill_null(pl.select(pl.when(second).then(paid)).to_series())


def check_prices(df: pl.DataFrame, what: str = "logs") -> None:
    """Ingest adds every canonical column, so a log without prices has them all null: that is
    "no price column" too, and must be said before the win-rate model trips over it."""
    if all(c not in df.columns or df[c].null_count() == df.height for c in MARKET_COLUMNS):
        raise SimulationError(
            f"{what} have no price column (market_price or paying_price): nothing to replay"
        )


def probability_column(df: pl.DataFrame, name: str) -> np.ndarray:
    if name not in df.columns:
        raise SimulationError(f"probability column {name!r}: not in the logs")
    values = df[name].cast(pl.Float64).to_numpy()
    bad = ~np.isfinite(values) | (values < 0) | (values > 1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise SimulationError(
            f"column {name!r}: {int(bad.sum())} values outside [0, 1] (row {i}: {values[i]})"
        )
    return values


def _auction_log(df: pl.DataFrame, pctr: np.ndarray, pcvr: np.ndarray | None) -> AuctionLog:
    segment = [
        segment_key(c or "", e or "")
        for c, e in zip(df["channel"].to_list(), _col(df, "exchange"), strict=True)
    ]
    return make_log(
        pctr=pctr,
        pcvr=pcvr,
        market_price=market_prices(df).to_numpy(),
        click=df["click"].to_numpy(),
        conversion=df["conversion"].fill_null(0).to_numpy() if "conversion" in df.columns else None,
        auction_type=df["auction_type"].fill_null("second").to_numpy()
        if "auction_type" in df.columns
        else "second",
        floor=df["floor_price"].to_numpy() if "floor_price" in df.columns else None,
        segment=np.asarray(segment),
        time=df["event_time"].to_numpy(),
        expected_click=df["true_ctr"].to_numpy() if "true_ctr" in df.columns else None,
    )


def _col(df: pl.DataFrame, name: str) -> list[Any]:
    return df[name].to_list() if name in df.columns else [None] * df.height


def fit_win_model(df: pl.DataFrame) -> WinRateModel | None:
    """The bid landscape from every auction of the fit window, lost ones as right-censored."""
    needed = {"bid_price", "won", "paying_price", "auction_type"}
    if not needed <= set(df.columns) or df["bid_price"].null_count() == df.height:
        return None
    rows = df.filter(pl.col("bid_price").is_not_null() & pl.col("won").is_not_null())
    if rows.height == 0 or rows["won"].all():
        return None  # only won auctions: nothing censored, and no first-price landscape to learn
    seg = [
        segment_key(c or "", e or "")
        for c, e in zip(_col(rows, "channel"), _col(rows, "exchange"), strict=True)
    ]
    market = rows["market_price"].to_numpy() if "market_price" in rows.columns else None
    return WinRateModel().fit(
        rows["bid_price"].to_numpy(),
        rows["won"].to_numpy(),
        rows["paying_price"].to_numpy(),
        rows["auction_type"].fill_null("second").to_numpy(),
        segment=np.asarray(seg),
        market_price=market,
    )


def simulate(
    df: pl.DataFrame,
    probs: Probabilities,
    *,
    strategies: Sequence[str],
    fractions: Sequence[str],
    replay_fraction: float = 0.3,
    fit_df: pl.DataFrame | None = None,
    fit_probs: Probabilities | None = None,
    goal: str = "cpc",
    target: float = 1.0,
    value_per_conversion: float | None = None,
    episode_length: int | None = None,
    max_bid: float = math.inf,
    seed: int = 0,
) -> SimulationResult:
    """Fit each strategy on the earlier window and replay the later one, per budget fraction;
    on synthetic logs (true_ctr present) every strategy also runs on the true probabilities."""
    names = [strategy_name(s) for s in strategies]  # unknown names fail before any work
    if not 0 < replay_fraction < 1:
        raise SimulationError(f"--replay-fraction: must be in (0, 1), got {replay_fraction}")
    gv = goal_value(goal, target, value_per_conversion)
    if gv.uses_pcvr and probs.pcvr is None:
        raise SimulationError(f"goal {goal!r} needs pCVR: give --pcvr-column or a cvr model")
    check_prices(df)
    if fit_df is not None:
        check_prices(fit_df, "--fit-logs")
    order = df.with_row_index("_i").sort("event_time", maintain_order=True)
    idx = order["_i"].to_numpy()
    df, pctr = order.drop("_i"), probs.pctr[idx]
    pcvr = probs.pcvr[idx] if probs.pcvr is not None else None
    if fit_df is None:
        cut = round(df.height * (1 - replay_fraction))
        fit_df, df = df[:cut], df[cut:]
        fit_p, fit_q = pctr[:cut], (pcvr[:cut] if pcvr is not None else None)
        pctr, pcvr = pctr[cut:], (pcvr[cut:] if pcvr is not None else None)
    else:
        assert fit_probs is not None
        fit_p, fit_q = fit_probs.pctr, fit_probs.pcvr
    win_model = fit_win_model(fit_df)
    warnings: list[str] = []

    def auctions(frame: pl.DataFrame, p: np.ndarray, q: np.ndarray | None) -> AuctionLog:
        mask = (
            frame.select(
                (pl.col("won").fill_null(True) if "won" in frame.columns else pl.lit(True))
                & market_prices(frame).is_not_null()
            )
            .to_series()
            .to_numpy()
        )
        sub = frame.filter(pl.Series(mask))
        if sub.height == 0:
            raise SimulationError("no won auctions with a known market price to replay")
        return _auction_log(sub, p[mask], q[mask] if q is not None else None)

    fit_log, replay_log = auctions(fit_df, fit_p, fit_q), auctions(df, pctr, pcvr)
    if replay_log.click.sum() == 0:
        warnings.append("the replayed window has no clicks: every click figure is 0")
    runs = [(probs.source, fit_log, replay_log)]
    if "true_ctr" in df.columns and fit_df is not None and "true_ctr" in fit_df.columns:
        truth = (
            TRUTH_SUFFIX,
            auctions(fit_df, fit_df["true_ctr"].to_numpy(), _truth_cvr(fit_df, fit_q)),
            auctions(df, df["true_ctr"].to_numpy(), _truth_cvr(df, pcvr)),
        )
        runs.append(truth)
    rows: list[dict[str, Any]] = []
    for label, fl, rl in runs:
        for name, frac, strat, res in replay_grid(
            fl, rl, names, fractions, gv, max_bid=max_bid, episode_length=episode_length,
            win_model=win_model, seed=seed,
        ):  # fmt: skip
            suffix = TRUTH_SUFFIX if label == TRUTH_SUFFIX else ""
            row = {**res.as_dict(), "strategy": name + suffix, "budget_fraction": frac}
            row["fitted"] = strat.__dict__ if hasattr(strat, "__dict__") else {}
            rows.append(row)
    params = {
        "strategies": ",".join(names),
        "budget_fractions": ",".join(str(f) for f in fractions),
        "replay_fraction": replay_fraction,
        "probabilities": probs.source,
        "goal": goal,
        "target": target,
        "episode_length": episode_length or 0,
        "fit_auctions": len(fit_log),
        "replay_auctions": len(replay_log),
        "win_model": "kaplan-meier" if win_model is not None else "none",
    }
    return SimulationResult(rows, params, warnings)


def _truth_cvr(df: pl.DataFrame, fallback: np.ndarray | None) -> np.ndarray | None:
    if fallback is None:
        return None
    return df["true_cvr"].to_numpy() if "true_cvr" in df.columns else fallback
