"""One adapter per source log format, each turning a raw frame into canonical columns.

An adapter only renames and derives columns; it may leave numbers as strings. Parsing,
validation, quarantine and IP anonymisation happen once, in `features.ingest`, for every
source alike. An adapter may add a REASON column for problems only it can see (an iPinYou
timestamp that is not yyyyMMddHHmmssSSS); ingestion quarantines those rows with that reason.

Adapters are plain functions gathered in a frozen record, not subclasses: adding a format is
adding a module and one entry in ADAPTERS.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

import polars as pl

from features.adapters import ipinyou, ipinyou_ctr, rlb_episodes
from features.adapters.ipinyou import REASON
from features.ipanon import anonymise_ip_series
from features.schema import REQUIRED, SCHEMA, TRUTH_SCHEMA

__all__ = ["ADAPTERS", "CANONICAL", "REASON", "Adapter", "detect_source"]


@dataclass(frozen=True)
class Adapter:
    """A source format: how to recognise it, what it cannot do without, how to map it."""

    name: str
    required: tuple[str, ...]  # raw columns without which no row can be used
    detect: Callable[[Sequence[str]], bool]
    to_canonical: Callable[[pl.DataFrame], pl.DataFrame]
    # Raw rows → the same rows with personal fields anonymised: what a quarantine file may hold.
    scrub: Callable[[pl.DataFrame], pl.DataFrame]


def _canonical_columns(frame: pl.DataFrame) -> pl.DataFrame:
    known = [c for c in (*SCHEMA, *TRUTH_SCHEMA) if c in frame.columns]
    return frame.select(known)


def _scrub_canonical(frame: pl.DataFrame) -> pl.DataFrame:
    if "ip" not in frame.columns or frame.schema["ip"] != pl.String:
        return frame
    return frame.with_columns(anonymise_ip_series(frame["ip"]).fill_null(frame["ip"]))


CANONICAL: Final = Adapter(
    name="canonical",
    required=REQUIRED,
    detect=lambda columns: True,
    to_canonical=_canonical_columns,
    scrub=_scrub_canonical,
)

ADAPTERS: Final[dict[str, Adapter]] = {
    CANONICAL.name: CANONICAL,
    ipinyou.NAME: Adapter(
        name=ipinyou.NAME,
        required=ipinyou.REQUIRED,
        detect=ipinyou.detect,
        to_canonical=ipinyou.to_canonical,
        scrub=ipinyou.scrub,
    ),
    ipinyou_ctr.NAME: Adapter(
        name=ipinyou_ctr.NAME,
        required=ipinyou_ctr.REQUIRED,
        detect=ipinyou_ctr.detect,
        to_canonical=ipinyou_ctr.to_canonical,
        scrub=ipinyou_ctr.scrub,
    ),
    rlb_episodes.NAME: Adapter(
        name=rlb_episodes.NAME,
        required=rlb_episodes.REQUIRED,
        detect=rlb_episodes.detect,
        to_canonical=rlb_episodes.to_canonical,
        scrub=rlb_episodes.scrub,
    ),
}


def detect_source(columns: Sequence[str]) -> str:
    """The name of the first adapter that recognises these column names; canonical otherwise."""
    for name in (ipinyou.NAME, ipinyou_ctr.NAME, rlb_episodes.NAME):
        if ADAPTERS[name].detect(columns):
            return name
    return CANONICAL.name
