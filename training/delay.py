"""Delayed feedback for pCVR: what a click whose attribution window is still open teaches.

A conversion arrives hours to days after its click, so at the data cut-off the newest clicks
have not had their whole window yet. `cvr.delay` says what training does with them:

* `drop`: leave them out (`splits.cvr_rows`). Unbiased, but the newest week of traffic, the most
  like tomorrow's, is never learned from, and a campaign that started last week is unknown.
* `naive`: count them as they stand (converted already or not): the classic biased baseline; a
  young click has had little time to convert, so pCVR is pulled down, most for new traffic.
* `em`: a delayed-feedback model in the manner of Chapelle (KDD 2014), fitted by EM. The delay
  distribution F (the share of a window's conversions that have arrived `e` seconds after the
  click) is fitted first, on the training window's matured conversions, whose delays are all
  known. A click still open after `e` seconds without a conversion then converts later with
  probability q = p (1 - F(e)) / (1 - p F(e)), p being P(conversion in the window | features).
  LightGBM sees each such click twice (a positive of weight q and a negative of weight 1 - q,
  DEFER-style duplication); p comes from the previous fit, the first fit using the matured
  clicks' rate. Clicks that converted already are positives, matured clicks keep their labels.

Nothing here looks past the cut-off: a click after it does not exist, and a conversion after it
has not happened (tests hold this by adding such events and comparing labels and weights).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import polars as pl

from training.config import DelayMode
from training.splits import LABEL

OPEN = "_open"  # the row is an unconverted open click: EM re-weights it
ELAPSED = "_elapsed_s"  # seconds from the click to the cut-off
KNOT_FROM_S = 60.0  # the fitted curve's first knot after 0
KNOTS = 48


class DelayError(ValueError):
    """The delay-aware training set cannot be built; the message says why."""


@dataclass(frozen=True)
class DelayModel:
    """F(e) = P(delay <= e | the click converts inside the window), on log-spaced knots, for
    the whole log and per value of a column `by` (the advertiser: an app install converts in
    minutes, a holiday in days).

    Each curve is its conversions' empirical distribution read at the knots and interpolated
    linearly in log time; a group's curve is shrunk towards the whole log's by `prior`
    pseudo-conversions, so a group with a handful of conversions gets nearly the common curve.
    F reaches 1 at the window's end by construction, as it must for conversions inside it.
    """

    seconds: tuple[float, ...]
    cdf: tuple[float, ...]
    conversions: int
    window_s: float
    by: str = ""
    groups: dict[str, tuple[float, ...]] = field(default_factory=dict)
    group_counts: dict[str, int] = field(default_factory=dict)

    def __call__(self, elapsed_s: np.ndarray, keys: np.ndarray | None = None) -> np.ndarray:
        e = np.log1p(np.clip(np.asarray(elapsed_s, dtype=np.float64), 0.0, self.window_s))
        knots = np.log1p(np.asarray(self.seconds))
        out = np.interp(e, knots, np.asarray(self.cdf))
        if keys is not None and self.groups:
            keys = np.asarray(keys, dtype=object)
            for key, cdf in self.groups.items():
                rows = keys == key
                if rows.any():
                    out[rows] = np.interp(e[rows], knots, np.asarray(cdf))
        return out

    def share_within(self, seconds: float) -> float:
        return float(self(np.array([seconds]))[0])

    def quantile(self, q: float) -> float:
        t = np.interp(q, np.asarray(self.cdf), np.log1p(np.asarray(self.seconds)))
        return float(np.expm1(t))

    def params(self) -> dict[str, Any]:
        return {
            "delay.conversions_fitted": self.conversions,
            "delay.share_within_1h": round(self.share_within(3600.0), 4),
            "delay.share_within_1d": round(self.share_within(86400.0), 4),
            "delay.median_hours": round(self.quantile(0.5) / 3600.0, 3),
            "delay.groups": len(self.groups),
        }


def _ecdf(d: np.ndarray, knots: np.ndarray) -> np.ndarray:
    cdf = np.searchsorted(np.sort(d), knots, side="right") / d.size
    cdf[-1] = 1.0
    return cdf


def fit_delay(
    delays_s: np.ndarray,
    window_s: float,
    keys: np.ndarray | None = None,
    by: str = "",
    prior: float = 30.0,
) -> DelayModel:
    """The delay distribution of conversions inside the window (see DelayModel)."""
    d = np.asarray(delays_s, dtype=np.float64)
    ok = np.isfinite(d) & (d >= 0) & (d <= window_s)
    if not ok.any():
        raise DelayError(
            "cvr.delay: no matured conversion with a conversion_time in the training window "
            "to fit the delay distribution on (use cvr.delay=drop, or a longer log)"
        )
    knots = np.concatenate([[0.0], np.geomspace(KNOT_FROM_S, window_s, KNOTS)])
    common = _ecdf(d[ok], knots)
    groups: dict[str, tuple[float, ...]] = {}
    counts: dict[str, int] = {}
    if keys is not None and by:
        k = np.asarray(keys, dtype=object)[ok]
        for key in sorted({x for x in k.tolist() if x is not None}):
            mine = d[ok][k == key]
            mix = (mine.size * _ecdf(mine, knots) + prior * common) / (mine.size + prior)
            groups[str(key)] = tuple(mix.tolist())
            counts[str(key)] = int(mine.size)
    return DelayModel(
        tuple(knots.tolist()),
        tuple(common.tolist()),
        int(ok.sum()),
        float(window_s),
        by,
        groups,
        counts,
    )


def em_posterior(p: np.ndarray, f: np.ndarray) -> np.ndarray:
    """P(the click converts inside its window | no conversion after the elapsed time)."""
    p = np.clip(np.asarray(p, dtype=np.float64), 0.0, 1.0 - 1e-9)
    f = np.clip(np.asarray(f, dtype=np.float64), 0.0, 1.0)
    return p * (1.0 - f) / (1.0 - p * f)


def click_at() -> pl.Expr:
    return pl.coalesce("click_time", "event_time")


def matured_delays(train: pl.DataFrame, by: str = "") -> tuple[np.ndarray, np.ndarray | None]:
    """Click-to-conversion seconds of the positives of a matured window (known times only),
    and their values of column `by` (None without one)."""
    rows = train.filter((pl.col(LABEL) == 1) & pl.col("conversion_time").is_not_null())
    delay = (pl.col("conversion_time") - click_at()).dt.total_microseconds() / 1e6
    d = rows.select(delay.alias("d")).get_column("d").to_numpy()
    keys = rows.get_column(by).cast(pl.String).to_numpy() if by else None
    return d, keys


def open_clicks(df: pl.DataFrame, attribution_days: float, cutoff: datetime) -> pl.DataFrame:
    """Clicks at or before the cut-off whose window is still open, labelled as seen at the
    cut-off: 1 if a conversion inside the window happened by then (or has no recorded time),
    else 0 with OPEN set; ELAPSED holds the seconds from the click to the cut-off."""
    window = timedelta(days=attribution_days)
    at = click_at()
    clicks = df.filter(
        (pl.col("click").fill_null(0) == 1) & (at <= cutoff) & (at + window > cutoff)
    )
    conv = pl.col("conversion_time")
    seen = (pl.col("conversion").fill_null(0) == 1) & (
        conv.is_null() | ((conv <= cutoff) & (conv - at <= window))
    )
    elapsed = (pl.lit(cutoff) - at).dt.total_microseconds() / 1e6
    return clicks.with_columns(
        seen.cast(pl.Float64).alias(LABEL), (~seen).alias(OPEN), elapsed.alias(ELAPSED)
    )


@dataclass(frozen=True)
class DelayedSet:
    """The training rows of a delay mode other than drop, one row per click, in time order.

    LABEL holds the expected label (EM's first estimate for open clicks), which is what the
    feature spec's segment lifts are fitted on; `targets` turns it into LightGBM rows.
    """

    mode: DelayMode
    frame: pl.DataFrame
    open_mask: np.ndarray  # unconverted open clicks
    f_open: np.ndarray  # F(elapsed) of those rows
    prior: float  # the matured training clicks' conversion rate
    delay: DelayModel | None
    info: dict[str, int] = field(default_factory=dict)

    def expected(self, p_open: np.ndarray | None = None) -> np.ndarray:
        """Per row: the label (matured or converted) or, for an open unconverted click, q."""
        y = self.frame.get_column(LABEL).to_numpy().astype(np.float64)
        if self.mode == "em":
            p = np.full(self.f_open.size, self.prior) if p_open is None else p_open
            y[self.open_mask] = em_posterior(p, self.f_open)
        return y


def build(
    train: pl.DataFrame,
    df: pl.DataFrame,
    mode: DelayMode,
    attribution_days: float,
    cutoff: datetime,
    *,
    by: str = "",
    delay_prior: float = 30.0,
) -> DelayedSet:
    """The matured training window plus the clicks still open at the cut-off (see module)."""
    if mode == "drop":
        raise DelayError("cvr.delay=drop trains on the matured window alone: nothing to build")
    fresh = open_clicks(df, attribution_days, cutoff)
    base = train.with_columns(
        pl.col(LABEL).cast(pl.Float64), pl.lit(False).alias(OPEN), pl.lit(0.0).alias(ELAPSED)
    )
    frame = pl.concat([base, fresh.select(base.columns)], how="vertical")
    open_mask = frame.get_column(OPEN).to_numpy().astype(bool)
    delay = None
    f_open = np.zeros(int(open_mask.sum()))
    if mode == "em":
        if by and by not in train.columns:
            raise DelayError(f"cvr.delay_by: the logs have no column {by!r}")
        d, keys = matured_delays(train, by)
        delay = fit_delay(d, attribution_days * 86400.0, keys, by, delay_prior)
        open_keys = frame.get_column(by).cast(pl.String).to_numpy()[open_mask] if by else None
        f_open = delay(frame.get_column(ELAPSED).to_numpy()[open_mask], open_keys)
    prior = float(train.get_column(LABEL).cast(pl.Float64).mean() or 0.0)
    info = {
        "clicks_open_used": fresh.height,
        "open_converted": int(fresh.height - open_mask.sum()),
    }
    ds = DelayedSet(mode, frame.drop(OPEN, ELAPSED), open_mask, f_open, prior, delay, info)
    return replace(ds, frame=ds.frame.with_columns(pl.Series(LABEL, ds.expected())))


@dataclass(frozen=True)
class Targets:
    """Rows for LightGBM: `rows` indexes the encoded matrix (open clicks appear twice)."""

    rows: np.ndarray
    y: np.ndarray
    weight: np.ndarray | None


def targets(ds: DelayedSet, p_open: np.ndarray | None = None) -> Targets:
    """naive: one row per click; em: open unconverted clicks twice, weighted q and 1 - q."""
    n = ds.frame.height
    if ds.mode != "em":
        return Targets(np.arange(n), ds.frame.get_column(LABEL).to_numpy(), None)
    q = ds.expected(p_open)[ds.open_mask]
    y = ds.frame.get_column(LABEL).to_numpy().copy()
    y[ds.open_mask] = 0.0
    w = np.ones(n)
    w[ds.open_mask] = 1.0 - q
    dup = np.flatnonzero(ds.open_mask)
    return Targets(
        np.concatenate([np.arange(n), dup]),
        np.concatenate([y, np.ones(dup.size)]),
        np.concatenate([w, q]),
    )


def fit_em(
    ds: DelayedSet,
    x: np.ndarray,
    iterations: int,
    fit: Callable[[np.ndarray, np.ndarray, np.ndarray | None], Any],
) -> tuple[Any, list[float]]:
    """Alternate the weighted fit (M) and the open clicks' posterior (E); `fit(x, y, w)`
    returns a FitResult. Returns the last fit and the mean q after each E-step."""
    p_open: np.ndarray | None = None
    means: list[float] = []
    result = None
    x_open = x[ds.open_mask]
    for i in range(max(iterations, 1)):
        t = targets(ds, p_open)
        result = fit(x[t.rows], t.y, t.weight)
        if i + 1 < iterations and x_open.shape[0]:
            p_open = result.booster.predict(x_open)
            means.append(float(em_posterior(p_open, ds.f_open).mean()))
    return result, means
