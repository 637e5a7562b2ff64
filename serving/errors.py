"""Domain errors of the service and the one handler that turns them into JSON.

Validation errors keep FastAPI's standard 422 body (`detail[]` with `loc` and `msg`); every other
client error is a `ServingError` subclass that knows its status and the field it is about, and
is answered as `{"detail": reason, "field": name}`. Routes declare the ones they can raise in
their OpenAPI `responses` through `responses_for`.
"""

from __future__ import annotations

from typing import Any, ClassVar

import orjson
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from starlette.responses import Response

from serving.schemas import ErrorBody


class ServingError(Exception):
    status_code: ClassVar[int] = 400
    summary: ClassVar[str] = "Bad request"

    def __init__(self, detail: str, field: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field


class Unauthorized(ServingError):
    status_code = 401
    summary = "Missing or wrong API key (header X-API-Key)"

    def __init__(self) -> None:
        super().__init__("missing or invalid API key", "X-API-Key")


class AdminDisabled(ServingError):
    status_code = 403
    summary = "Admin endpoints are off: no BIDOPT_API_KEY is configured"

    def __init__(self) -> None:
        super().__init__("admin endpoints are disabled: set BIDOPT_API_KEY to enable them", None)


class PayloadTooLarge(ServingError):
    status_code = 413
    summary = "Body over the size limit, or more impressions/campaigns than allowed"


class TooManyItems(PayloadTooLarge):
    def __init__(self, field: str, count: int, limit: int) -> None:
        super().__init__(f"{count} {field} in one request; the limit is {limit}", field)


class BodyTooLarge(PayloadTooLarge):
    def __init__(self, limit: int) -> None:
        super().__init__(f"request body is larger than the limit of {limit} bytes", "body")


class UnknownCampaign(ServingError):
    status_code = 404
    summary = "A campaign id that is not in the campaigns file"

    def __init__(self, campaign_id: str, field: str) -> None:
        super().__init__(f"unknown campaign {campaign_id!r}: not in the campaigns file", field)


class NoCampaigns(ServingError):
    status_code = 400
    summary = "No inline campaigns and no campaigns file to take them from"

    def __init__(self) -> None:
        super().__init__(
            "no campaigns: send inline `campaigns`, or start the service with a campaigns file "
            "(--campaigns / BIDOPT_CAMPAIGNS_FILE)",
            "campaigns",
        )


class InvalidSignature(ServingError):
    status_code = 403
    summary = "A win notice whose signature does not match the URL this service issued"

    def __init__(self) -> None:
        super().__init__("invalid or missing signature: not a win notice issued here", "sig")


class NotReady(ServingError):
    status_code = 503
    summary = "Models are not loaded yet (see /readyz)"

    def __init__(self, reason: str) -> None:
        super().__init__(f"models not loaded: {reason}", None)


def error_response(status_code: int, detail: str, field: str | None) -> Response:
    body = orjson.dumps({"detail": detail, "field": field})
    return Response(body, status_code=status_code, media_type="application/json")


def render(request: Request, exc: ServingError | RequestValidationError) -> Response:
    """The response for a client error: what the app's exception handlers answer, also used
    where a request skips the router (app.ServiceMiddleware's direct handlers)."""
    if isinstance(exc, ServingError):
        return error_response(exc.status_code, exc.detail, exc.field)
    return _validation_response(request, exc)


async def _handle(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServingError | RequestValidationError)
    return render(request, exc)


def _validation_response(request: Request, exc: RequestValidationError) -> Response:
    """FastAPI's standard 422 body, serialised so that a NaN or infinity echoed back in
    `input` cannot turn the 422 into a 500 (the stdlib encoder refuses them; orjson writes
    null)."""
    if request.url.path in BAD_REQUEST_PATHS:
        return _bad_request(exc)
    body = orjson.dumps({"detail": jsonable_encoder(exc.errors())}, default=str)
    return Response(body, status_code=422, media_type="application/json")


# Routes whose protocol answers a malformed request with 400, not 422 (OpenRTB practice).
BAD_REQUEST_PATHS = frozenset({"/openrtb2/bid"})


def _bad_request(exc: RequestValidationError) -> Response:
    """The first problem as `{"detail": reason, "field": name}`, e.g. field `imp[0].bidfloor`."""
    errors = exc.errors()
    if not errors:
        return error_response(400, "malformed request", "body")
    err = errors[0]
    loc = [p for p in err.get("loc", ()) if p != "body"]
    field = ""
    for part in loc:
        field += f"[{part}]" if isinstance(part, int) else (f".{part}" if field else str(part))
    msg = str(err.get("msg", "invalid"))
    if err.get("type") == "json_invalid":
        msg, field = "the body is not valid JSON", "body"
    return error_response(400, msg, field or "body")


def install(app: FastAPI) -> None:
    app.add_exception_handler(ServingError, _handle)
    app.add_exception_handler(RequestValidationError, _handle)


def responses_for(*errors: type[ServingError]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for the domain errors a route can return."""
    out: dict[int | str, dict[str, Any]] = {}
    for err in errors:
        entry = out.setdefault(err.status_code, {"model": ErrorBody, "description": ""})
        sep = "; " if entry["description"] else ""
        if err.summary not in entry["description"]:
            entry["description"] += sep + err.summary
    return out
