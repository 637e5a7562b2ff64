"""Which creatives fit an impression slot: format, size, duration, channel, badv and bcat.

Apart from targeting (which decides whether a campaign may bid at all) because it reads the
campaign's `Creative` model, which is built from targeting's field types: in one module the two
would import each other.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bidding.campaigns import Creative


def _domain_blocked(domain: str, blocked: Collection[str]) -> bool:
    for b in blocked:
        b = b.strip().lower()
        if b and (domain == b or domain.endswith("." + b)):
            return True
    return False


def _category_blocked(categories: Collection[str], blocked: Collection[str]) -> bool:
    """bcat "IAB25" blocks "IAB25" and its sub-categories ("IAB25-3"), as exchanges read it."""
    for b in blocked:
        b = b.strip().upper()
        if b and any(c == b or c.startswith(b + "-") for c in categories):
            return True
    return False


def creative_fits(
    creative: Creative,
    imp_format: str | None,
    sizes: Sequence[tuple[int, int]] | None = None,
    channel: str | None = None,
    *,
    min_duration: float | None = None,
    max_duration: float | None = None,
    blocked_adomains: Collection[str] = (),
    blocked_categories: Collection[str] = (),
) -> bool:
    """Whether `creative` may serve in this slot (OpenRTB imp + badv + bcat).

    An exchange slot (`imp_format` given) takes only creatives that declare their format, and a
    banner slot that lists sizes only banners of a listed size: a bid whose creative cannot be
    shown there is rejected by the exchange or, worse, rendered badly. So a shorthand creative
    (`"cr1"`, nothing declared) bids on /v1/bid but never on an OpenRTB imp. Video scales to
    the player, so only its duration is checked against the slot's window. An advertiser domain
    is blocked by an exact `badv` entry or by a parent domain in it (badv "ford.com" blocks
    "shop.ford.com"); a category by `bcat` naming it or its parent. A creative that declares no
    categories is not blocked by bcat: declare them for exchanges that enforce it.
    """
    fmt = creative.format
    if imp_format is not None and fmt != imp_format:
        return False
    chans = creative.channel_set
    if chans is not None and channel not in chans:
        return False
    if sizes and fmt == "banner" and (creative.width, creative.height) not in sizes:
        return False  # an undeclared size (None, None) is never a listed one
    d = creative.duration_s
    if d is not None:
        if min_duration is not None and d < min_duration:
            return False
        if max_duration is not None and d > max_duration:
            return False
    if (
        blocked_categories
        and creative.categories is not None
        and _category_blocked(creative.categories, blocked_categories)
    ):
        return False
    return not (
        blocked_adomains
        and creative.adomain is not None
        and _domain_blocked(creative.adomain, blocked_adomains)
    )
