"""The replay simulator's orchestration: logs → auction arrays → fitted strategies → results.

The bidding arithmetic is `bidding.replay` (the one bid function serving calls too); this module
only decides which rows are auctions, where probabilities come from, and which window fits and
which replays. Only won impressions are replayed, as in the iPinYou benchmark: they are the rows
whose market price and click outcome the log knows. Strategy parameters and the win-rate model
are fitted on the earlier window, never on the replayed one.

With an episode column (the RLB benchmark's files, features/adapters/rlb_episodes.py) the split
falls on an episode boundary and every strategy replays by that benchmark's rules
(bidding/grid.py); the campaign's training figures, when given, set the budget per auction
(CPM_train / 1000) and rlb's market-price model (the training histogram).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from bidding.fitting import at_bound
from bidding.goals import goal_value
from bidding.grid import replay_grid
from bidding.replay import AuctionLog, make_log, with_probabilities
from bidding.rlb import market_from_counts
from bidding.strategies import strategy_name, strategy_to_dict
from bidding.winrate import SEP, WinRateModel
from features.adapters.rlb_episodes import TrainInfo

TRUTH_SUFFIX = "@truth"
MARKET_COLUMNS = ("market_price", "paying_price")
TABLE_COLUMNS = (
    "strategy", "budget_fraction", "budget", "auctions", "bids", "wins", "clicks", "conversions",
    "spend", "ecpc", "ecpa", "ctr", "win_rate", "exhausted_fraction", "expected_clicks",
    "spend_share", "episodes",
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


def segments(df: pl.DataFrame) -> np.ndarray:
    """`winrate.segment_key(channel, exchange)` of each row (a missing one as ""), joined by
    polars: a per-row Python loop over two lists of strings held ~200 bytes a row at once."""
    parts = [
        pl.col(c).cast(pl.String).fill_null("") if c in df.columns else pl.lit("")
        for c in ("channel", "exchange")
    ]
    return df.select(pl.concat_str(parts, separator=SEP)).to_series().to_numpy()


def _auction_log(df: pl.DataFrame, pctr: np.ndarray, pcvr: np.ndarray | None) -> AuctionLog:
    segment = segments(df)
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


def fit_win_model(df: pl.DataFrame) -> WinRateModel | None:
    """The bid landscape from every auction of the fit window, lost ones as right-censored."""
    needed = {"bid_price", "won", "paying_price", "auction_type"}
    if not needed <= set(df.columns) or df["bid_price"].null_count() == df.height:
        return None
    rows = df.filter(pl.col("bid_price").is_not_null() & pl.col("won").is_not_null())
    if rows.height == 0 or rows["won"].all():
        return None  # only won auctions: nothing censored, and no first-price landscape to learn
    seg = segments(rows)
    market = rows["market_price"].to_numpy() if "market_price" in rows.columns else None
    return WinRateModel().fit(
        rows["bid_price"].to_numpy(),
        rows["won"].to_numpy(),
        rows["paying_price"].to_numpy(),
        rows["auction_type"].fill_null("second").to_numpy(),
        segment=seg,
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
    goal: str = "max_clicks",
    target: float | None = None,
    value_per_conversion: float | None = None,
    episode_length: int | None = None,
    max_bid: float = math.inf,
    seed: int = 0,
    episodes: np.ndarray | None = None,
    fit_episodes: np.ndarray | None = None,
    train_info: TrainInfo | None = None,
) -> SimulationResult:
    """Fit each strategy on the earlier window and replay the later one, per budget fraction;
    on synthetic logs (true_ctr present) every strategy also runs on the true probabilities.
    `episodes` (`fit_episodes` for `fit_df`): episode id per row."""
    names = [strategy_name(s) for s in strategies]  # unknown names fail before any work
    if not 0 < replay_fraction < 1:
        raise SimulationError(f"--replay-fraction: must be in (0, 1), got {replay_fraction}")
    if episodes is not None and episode_length is not None:
        raise SimulationError("--episode-column and --episode-length: give one of them")
    if (fit_df is not None) and (episodes is not None) != (fit_episodes is not None):
        raise SimulationError("--episode-column: needed in both --logs and --fit-logs")
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
    eps = episodes[idx] if episodes is not None else None
    if fit_df is None:
        cut = round(df.height * (1 - replay_fraction))
        if eps is not None:
            cut = _episode_cut(eps, cut)
        fit_df, df = df[:cut], df[cut:]
        fit_p, fit_q = pctr[:cut], (pcvr[:cut] if pcvr is not None else None)
        pctr, pcvr = pctr[cut:], (pcvr[cut:] if pcvr is not None else None)
        fit_e, eps = (eps[:cut], eps[cut:]) if eps is not None else (None, None)
    else:
        assert fit_probs is not None
        fit_p, fit_q, fit_e = fit_probs.pctr, fit_probs.pcvr, fit_episodes
    win_model = fit_win_model(fit_df)
    warnings: list[str] = []

    def kept(frame: pl.DataFrame) -> np.ndarray:
        return (
            frame.select(
                (pl.col("won").fill_null(True) if "won" in frame.columns else pl.lit(True))
                & market_prices(frame).is_not_null()
            )
            .to_series()
            .to_numpy()
        )

    def auctions(
        frame: pl.DataFrame, mask: np.ndarray, p: np.ndarray, q: np.ndarray | None
    ) -> AuctionLog:
        sub = frame.filter(pl.Series(mask))
        if sub.height == 0:
            raise SimulationError("no won auctions with a known market price to replay")
        return _auction_log(sub, p[mask], q[mask] if q is not None else None)

    def truth(
        frame: pl.DataFrame, mask: np.ndarray, log: AuctionLog, q: np.ndarray | None
    ) -> AuctionLog:
        """The same auctions under the synthetic log's true probabilities (columns shared)."""
        cvr = _truth_cvr(frame, q)
        p = frame["true_ctr"].to_numpy()[mask]
        return with_probabilities(log, p, cvr[mask] if cvr is not None else None)

    fit_kept, replay_kept = kept(fit_df), kept(df)
    fit_log = auctions(fit_df, fit_kept, fit_p, fit_q)
    replay_log = auctions(df, replay_kept, pctr, pcvr)
    if replay_log.click.sum() == 0:
        warnings.append("the replayed window has no clicks: every click figure is 0")
    runs = [(probs.source, fit_log, replay_log)]
    if "true_ctr" in df.columns and fit_df is not None and "true_ctr" in fit_df.columns:
        runs.append(
            (
                TRUTH_SUFFIX,
                truth(fit_df, fit_kept, fit_log, fit_q),
                truth(df, replay_kept, replay_log, pcvr),
            )
        )
    ep_kw: dict[str, Any] = {}
    if eps is not None and fit_e is not None:
        ep_kw = {"fit_episodes": fit_e[fit_kept], "replay_episodes_ids": eps[replay_kept]}
    if train_info is not None:
        ep_kw["price_per_auction"] = train_info.mean_price
        ep_kw["market_model"] = market_from_counts(train_info.market_price_counts)
    rows: list[dict[str, Any]] = []
    for label, fl, rl in runs:
        for name, frac, strat, res in replay_grid(
            fl, rl, names, fractions, gv, max_bid=max_bid, episode_length=episode_length,
            win_model=win_model, seed=seed, **ep_kw,
        ):  # fmt: skip
            suffix = TRUTH_SUFFIX if label == TRUTH_SUFFIX else ""
            row = {**res.as_dict(), "strategy": name + suffix, "budget_fraction": frac}
            row["fitted"] = strategy_to_dict(strat)
            note = at_bound(strat, fl.market_price, scale_free=not gv.has_target)
            if note:
                warnings.append(_bound_warning(name + suffix, frac, note, res.spend_share, gv))
            rows.append(row)
    params = {
        "strategies": ",".join(names),
        "budget_fractions": ",".join(str(f) for f in fractions),
        "replay_fraction": replay_fraction,
        "probabilities": probs.source,
        "goal": goal,
        "target": target,
        "episode_length": episode_length or 0,
        "episodes": "column" if eps is not None else ("length" if episode_length else "none"),
        "budget_base": "train_info" if train_info is not None else "window_market_price",
        "fit_auctions": len(fit_log),
        "replay_auctions": len(replay_log),
        "win_model": "kaplan-meier" if win_model is not None else "none",
    }
    return SimulationResult(rows, params, warnings)


def _truth_cvr(df: pl.DataFrame, fallback: np.ndarray | None) -> np.ndarray | None:
    if fallback is None:
        return None
    return df["true_cvr"].to_numpy() if "true_cvr" in df.columns else fallback


def _episode_cut(episodes: np.ndarray, cut: int) -> int:
    """The episode boundary nearest to row `cut`: an episode is fitted or replayed, not split."""
    change = np.flatnonzero(episodes[1:] != episodes[:-1]) + 1
    if change.size == 0:
        raise SimulationError("--episode-column: one episode only; nothing to fit on")
    return int(change[np.argmin(np.abs(change - cut))])


def _bound_warning(name: str, frac: float, note: str, share: float, gv: Any) -> str:
    spent = "?" if share != share else f"{share:.0%}"
    hint = ""
    if gv.has_target:
        hint = (
            f" (with goal {gv.goal!r} the value may sit far below the market price; "
            "--goal max_clicks lets each strategy fit its own scale)"
        )
    return f"{name} at {frac:g}: {note}; it spent {spent} of the replay budget{hint}"
