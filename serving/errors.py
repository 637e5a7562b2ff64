"""Domain errors of the service and the one function that turns them into responses.

Validation errors keep FastAPI's standard 422 body (`detail[]` with `loc` and `msg`); every other
client error is a `ServingError` subclass that knows its status and the field it is about, and
is answered as `{"detail": reason, "field": name}`. A route whose protocol answers a malformed
request with 400 (OpenRTB) says so itself (`lane.JsonBodyRoute.validation_status`), which turns
its validation errors into `MalformedRequest`: the choice is the route's, not a list of URLs.
Routes declare the errors they can raise in their OpenAPI `responses` through `responses_for`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar, Final

import orjson
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from starlette.responses import Response

from serving.api.schemas import ErrorBody

INT64: Final = 1 << 63


class ServingError(Exception):
    status_code: ClassVar[int] = 400
    summary: ClassVar[str] = "Bad request"

    def __init__(self, detail: str, field: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field


class MalformedRequest(ServingError):
    status_code = 400
    summary = "Malformed request: the reason and the field"


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


class InvalidSignature(ServingError):
    status_code = 403
    summary = "A win notice whose signature does not match the URL this service issued"

    def __init__(self) -> None:
        super().__init__("invalid or missing signature: not a win notice issued here", "sig")


class UnknownCampaign(ServingError):
    status_code = 404
    summary = "A campaign id that is not in the campaigns file"

    def __init__(self, campaign_id: str, field: str) -> None:
        super().__init__(f"unknown campaign {campaign_id!r}: not in the campaigns file", field)


class BodyTimeout(ServingError):
    status_code = 408
    summary = "The request body did not arrive in time"

    def __init__(self, seconds: float) -> None:
        super().__init__(f"the request body did not arrive within {seconds:g} s", "body")


class PayloadTooLarge(ServingError):
    status_code = 413
    summary = "Body over the size limit, or more items (impressions, campaigns) than allowed"


class TooManyItems(PayloadTooLarge):
    def __init__(self, field: str, count: int, limit: int) -> None:
        super().__init__(f"{count} {field} in one request; the limit is {limit}", field)


class BodyTooLarge(PayloadTooLarge):
    def __init__(self, limit: int) -> None:
        super().__init__(f"request body is larger than the limit of {limit} bytes", "body")


class NoCampaigns(ServingError):
    status_code = 400
    summary = "No inline campaigns and no campaigns file to take them from"

    def __init__(self) -> None:
        super().__init__(
            "no campaigns: send inline `campaigns`, or start the service with a campaigns file "
            "(--campaigns / BIDOPT_CAMPAIGNS_FILE)",
            "campaigns",
        )


class NotReady(ServingError):
    status_code = 503
    summary = "Not ready: models not loaded yet (see /readyz)"

    def __init__(self, reason: str) -> None:
        super().__init__(f"models not loaded: {reason}", None)


class LedgerDown(ServingError):
    status_code = 503
    summary = "The ledger cannot be written (disk full, directory gone): nothing was booked"

    def __init__(self, reason: str) -> None:
        super().__init__(f"ledger unavailable: {reason}; nothing was booked, retry", None)


def error_response(status_code: int, detail: str, field: str | None) -> Response:
    body = orjson.dumps({"detail": detail, "field": field})
    return Response(body, status_code=status_code, media_type="application/json")


def render(exc: ServingError | RequestValidationError) -> Response:
    """The response for a client error: what the app's exception handlers answer, and what the
    fast lane answers for the same error."""
    if isinstance(exc, ServingError):
        return error_response(exc.status_code, exc.detail, exc.field)
    return validation_response(exc.errors())


def validation_response(errors: Sequence[Any]) -> Response:
    """FastAPI's standard 422 body, serialised so that no echoed `input` can turn it into a
    500: orjson writes NaN and infinity as null, and integers beyond 64 bits (which it refuses)
    are echoed as their decimal text."""
    body = orjson.dumps({"detail": _encodable(jsonable_encoder(errors))}, default=str)
    return Response(body, status_code=422, media_type="application/json")


def _encodable(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if -INT64 <= value < INT64 else str(value)
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, Mapping):
        return {str(k): _encodable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_encodable(v) for v in value]
    return value


def field_error(loc: tuple[str | int, ...], msg: str, value: Any) -> RequestValidationError:
    """A semantic problem with one field of a well-formed request (a price above the bid, a time
    outside the flight), reported in the same 422 shape as a type error in that field; `loc`
    starts with where it is ("body", "query")."""
    return RequestValidationError([{"type": "value_error", "loc": loc, "msg": msg, "input": value}])


def first_problem(errors: Iterable[Any]) -> MalformedRequest:
    """A validation error as one 400: the first problem, e.g. field `imp[0].bidfloor`."""
    for err in errors:
        loc = [p for p in err.get("loc", ()) if p != "body"]
        field = ""
        for part in loc:
            field += f"[{part}]" if isinstance(part, int) else (f".{part}" if field else str(part))
        msg = str(err.get("msg", "invalid"))
        if err.get("type") == "json_invalid" and all(isinstance(p, int) for p in loc):
            msg, field = "the body is not valid JSON", "body"
        elif err.get("type") == "content_type":
            field = "Content-Type"
        return MalformedRequest(msg, field or "body")
    return MalformedRequest("malformed request", "body")


async def _handle(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServingError | RequestValidationError)
    return render(exc)


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
