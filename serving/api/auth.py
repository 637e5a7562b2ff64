"""Who may write: the one API key (BIDOPT_API_KEY) that guards `/v1/events` and `/admin/*`.

One key for both, because both are the operator's integrations (the ad server or exchange
adapter that posts events, the deploy job that reloads): a second key would double what has to
be rotated without separating anyone. The win notice (`GET /v1/win`) needs no key: it is signed
per bid. Keys are compared in constant time; placeholder and short keys are refused when the
settings are read (`settings.BidoptSettings`).
"""

from __future__ import annotations

import hmac
from typing import Any, Final, Literal

from starlette.requests import Request

from serving.errors import AdminDisabled, Unauthorized
from serving.settings import BidoptSettings

KEY_HEADER: Final = "x-api-key"
KEY_PARAMETER: Final[dict[str, Any]] = {
    "name": "X-API-Key",
    "in": "header",
    "required": False,
    "schema": {"type": "string"},
    "description": "The BIDOPT_API_KEY value; required when the service has one.",
}


def require_key(
    settings: BidoptSettings, request: Request, *, writes: Literal["events", "admin"]
) -> None:
    """Unauthorized unless the request carries the configured key. With no key configured,
    events are open (the service then listens on loopback only) and admin is off."""
    key = settings.api_key
    if key is None:
        if writes == "admin":
            raise AdminDisabled()
        return
    given = request.headers.get(KEY_HEADER)
    if given is None or not hmac.compare_digest(
        given.encode("utf-8", "surrogateescape"), key.get_secret_value().encode()
    ):
        raise Unauthorized()
