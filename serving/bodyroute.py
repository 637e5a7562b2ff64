"""A route class for the per-impression endpoints: the body parsed and validated by pydantic in
JSON mode, then the endpoint called directly.

`direct_handlers` gives these handlers by path, taking the body and Content-Type already read,
for app.ServiceMiddleware to call without FastAPI's routing or Starlette's request stream.

Per request, FastAPI's own handler parses the body with `json.loads`, validates the resulting
dicts in Python mode, parses the Content-Type with the email package and solves the endpoint's
parameters: on `/v1/bid` with one impression that cost more than scoring it (py-spy on
bench/serve_load.py). pydantic-core parses and validates JSON in one pass. The endpoint keeps
its declared signature `(body: Model, request: Request)`, so the OpenAPI document (request
schema, 422 response) and the schemathesis checks see the same route, and invalid bodies get
FastAPI's standard 422 (`detail[]` whose `loc` starts with "body").
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

Handler = Callable[[Request], Coroutine[Any, Any, Response]]
DirectHandler = Callable[[Request, bytes, "str | None"], Coroutine[Any, Any, Response]]


def is_json(content_type: str | None) -> bool:
    """application/json or application/*+json (parameters such as charset allowed), as
    FastAPI accepts; a missing Content-Type is refused, as FastAPI does by default."""
    if not content_type:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    kind, _, subtype = media.partition("/")
    return kind == "application" and (subtype == "json" or subtype.endswith("+json"))


def body_errors(exc: ValidationError, body: bytes) -> list[dict[str, Any]]:
    """pydantic's errors with FastAPI's "body" prefix on each location; malformed JSON as
    FastAPI reports it (`loc` ["body", character offset], msg "JSON decode error")."""
    errors = exc.errors(include_url=False)
    if errors and errors[0]["type"] == "json_invalid":
        try:
            json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            pos = e.pos if isinstance(e, json.JSONDecodeError) else e.start
            return [
                {
                    "type": "json_invalid",
                    "loc": ("body", pos),
                    "msg": "JSON decode error",
                    "input": {},
                    "ctx": {"error": getattr(e, "msg", str(e))},
                }
            ]
    return [{**err, "loc": ("body", *err["loc"])} for err in errors]


def not_json_error() -> RequestValidationError:
    return RequestValidationError(
        [
            {
                "type": "content_type",
                "loc": ("body",),
                "msg": "the body must be JSON, sent with Content-Type: application/json",
                "input": None,
            }
        ]
    )


class JsonBodyRoute(APIRoute):
    """For `async def endpoint(body: Model, request: Request) -> Response` routes only (no
    other parameters, no dependencies): anything else is refused when the route is added."""

    def get_route_handler(self) -> Handler:
        call = self.direct_handler()

        async def handler(request: Request) -> Response:
            return await call(request, await request.body(), request.headers.get("content-type"))

        return handler

    def direct_handler(self) -> DirectHandler:
        """The handler for a request whose body and Content-Type the caller has read."""
        field = self.body_field
        names = list(inspect.signature(self.endpoint).parameters)
        model = field.field_info.annotation if field is not None else None
        if not (
            field is not None
            and isinstance(model, type)
            and issubclass(model, BaseModel)
            and names == [field.name, "request"]
            and not self.dependencies
            and inspect.iscoroutinefunction(self.endpoint)
        ):
            raise TypeError(
                f"{self.path}: JsonBodyRoute needs `async def (body: Model, request: Request)`, "
                f"got parameters {names}"
            )
        return json_endpoint(model, self.endpoint)


def json_endpoint(model: type[BaseModel], endpoint: Callable[..., Any]) -> DirectHandler:
    validate = model.model_validate_json

    async def call(request: Request, body: bytes, content_type: str | None) -> Response:
        if not is_json(content_type):
            raise not_json_error()
        try:
            value = validate(body)
        except ValidationError as exc:
            raise RequestValidationError(body_errors(exc, body), body=body) from None
        return await endpoint(value, request)  # type: ignore[no-any-return]

    return call


def direct_handlers(routes: Iterable[BaseRoute]) -> dict[str, DirectHandler]:
    """path -> handler of every JsonBodyRoute (POST only), as the router would run it."""
    out: dict[str, DirectHandler] = {}
    for route in routes:
        if isinstance(route, JsonBodyRoute):
            if route.methods != {"POST"}:
                raise TypeError(f"{route.path}: a JsonBodyRoute serves POST only")
            out[route.path] = route.direct_handler()
    return out
