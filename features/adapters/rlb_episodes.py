"""The RLB benchmark's episode files (han-cai/rlb-dp, `C.validation.txt` with an `episode`
column) → canonical columns, and the campaign's training figures (`C.train-info.json`).

An episode file has four columns: `episode` (1..E, in time order), `click`, `market_price` (what
a won impression costs) and `pctr` (the benchmark's own CTR estimate). Derived, by these rules:
- Ids: impression and request id are "rlb-<n>", n the 0-based data row number; no user.
- Time: none in the file; file order is time order, so event_time is one second per row from
  2013-06-06 00:00 UTC (iPinYou season 2), strictly increasing.
- Every row is a won second-price auction whose paying price is the market price (the benchmark
  replays won impressions only), channel "web".
- `pctr` and `episode` are not canonical columns: `bidopt simulate --pctr-column pctr
  --episode-column episode` reads them back from the file, row for row.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import polars as pl

from features.adapters.ipinyou import REASON, quoted, raw

NAME: Final = "rlb_episodes"
ID_PREFIX: Final = "rlb-"
START: Final = datetime(2013, 6, 6, tzinfo=UTC)
REQUIRED: Final = ("episode", "click", "market_price", "pctr")


def detect(columns: Sequence[str]) -> bool:
    return set(columns) == set(REQUIRED)


def to_canonical(frame: pl.DataFrame) -> pl.DataFrame:
    """Canonical columns (numbers still as strings) plus the REASON column."""
    price = raw(frame, "market_price").str.strip_chars()
    ok = price.cast(pl.Float64, strict=False).is_not_null()
    reason = pl.when(price.is_null()).then(pl.lit("missing market_price"))
    reason = reason.when(~ok).then(
        pl.concat_str(pl.lit("market_price not a number: "), quoted(price))
    )
    row = pl.int_range(pl.len())
    return frame.select(
        (pl.lit(START, dtype=pl.Datetime("us", "UTC")) + pl.duration(seconds=row)).alias(
            "event_time"
        ),
        pl.concat_str(pl.lit(ID_PREFIX), row.cast(pl.String)).alias("request_id"),
        pl.concat_str(pl.lit(ID_PREFIX), row.cast(pl.String)).alias("impression_id"),
        pl.lit("web").alias("channel"),
        pl.lit("true").alias("won"),
        price.alias("market_price"),
        price.alias("paying_price"),
        pl.lit("second").alias("auction_type"),
        raw(frame, "click").str.strip_chars().alias("click"),
        reason.alias(REASON),
    )


def scrub(frame: pl.DataFrame) -> pl.DataFrame:
    """Nothing personal in these files: the raw rows as they are."""
    return frame


@dataclass(frozen=True)
class TrainInfo:
    """A campaign's training-days figures: what the benchmark fits budgets and models on."""

    cpm_train: float  # 1000 x the average market price, in market_price units
    avg_ctr_train: float
    market_price_counts: tuple[float, ...]  # index i: training auctions at market price i

    @property
    def mean_price(self) -> float:
        """Average cost of one won impression: the budget per auction at c0 = 1."""
        return self.cpm_train / 1000.0


def read_train_info(path: Path) -> TrainInfo:
    """Read and check `C.train-info.json`; a missing or wrong field is named."""
    shown = str(path)
    try:
        data = json.loads(Path(path).read_text())
    except OSError as e:
        raise ValueError(f"{shown}: cannot read ({e.strerror or e})") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{shown}: not JSON ({e.msg}, line {e.lineno})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{shown}: expected a JSON object")

    def number(name: str) -> float:
        v = data.get(name)
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v <= 0:
            raise ValueError(f"{shown}: {name}: must be a number > 0, got {v!r}")
        return float(v)

    counts = data.get("market_price_counts_train")
    if not isinstance(counts, list) or not counts:
        raise ValueError(f"{shown}: market_price_counts_train: must be a non-empty list of counts")
    for i, c in enumerate(counts):
        if isinstance(c, bool) or not isinstance(c, int | float) or not (c >= 0):
            raise ValueError(f"{shown}: market_price_counts_train[{i}]: not a count >= 0: {c!r}")
    if sum(counts) <= 0:
        raise ValueError(f"{shown}: market_price_counts_train: all zero")
    return TrainInfo(number("cpm_train"), number("avg_ctr_train"), tuple(map(float, counts)))
