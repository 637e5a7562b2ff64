"""Request enrichment from the DMP profile store, before encoding and targeting.

An impression that names its user (`user_id`) but not the user counters gets them from the
profile store, computed by the one definition training used (`features.profiles.counters_as_of`,
as of the impression's event_time, strictly earlier events only); its segments too, when it sent
none. Counters the caller did send win: the caller may know more than this store. The user's
per-campaign impression counts come back for frequency capping.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from features.profiles import COUNTER_COLUMNS
from serving.state.store import Store


def fill_from_profile(request: dict[str, Any], store: Store) -> dict[str, tuple[int, int]] | None:
    """Fill `request` in place; returns the user's (24 h, 7 d) impressions per campaign id, or
    None when the request names no user (then no frequency cap can apply)."""
    user = request.get("user_id")
    if not user:
        return None
    when = request.get("event_time")
    if not isinstance(when, datetime):
        when = datetime.now(UTC)
    elif when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    profile = store.profile(str(user), int(when.timestamp() * 1_000_000))
    for column in COUNTER_COLUMNS:
        if request.get(column) is None:
            request[column] = profile.counters.get(column)
    if not request.get("user_segments") and profile.segments:
        request["user_segments"] = list(profile.segments)
    return profile.campaign_imps
