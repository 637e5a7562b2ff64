"""The fast lane, whole: which POSTs skip FastAPI's router, how their body is validated, and how
their answer is sent.

Every JSON-body POST of the service (`/v1/predict`, `/v1/bid`, `/v1/events`, `/openrtb2/bid`) is
declared on a router whose route class is `JsonBodyRoute`, so the OpenAPI document (request
schema, error responses) and the schemathesis checks see ordinary FastAPI routes. Per request,
though, FastAPI's own handler parses the body with `json.loads`, validates the resulting dicts in
Python mode, parses the Content-Type with the email package and solves the endpoint's
parameters, and its router matches the path against every route through several layers: on a
one-impression `/v1/bid` that cost more than scoring it (205 -> 151 µs in process; +20% and then
+11.5% req/s in wrk A/Bs, when the body read and send were also taken over). So:

- `JsonBodyRoute.direct_handler()` validates the raw body in pydantic's JSON mode (one Rust pass,
  which also refuses lone surrogates and nesting past its limit) and calls the endpoint;
- `Lane`, the outermost layer, reads the body of a POST on those paths (`middleware.BodyReader`,
  as `BodyLimit` reads every other), hands it straight to that handler, renders client errors
  with `errors.render` (what the app's exception handlers answer), counts the answer
  (`middleware.Observer`, as `RequestMetrics` counts every other) and sends the response's two
  ASGI messages itself.

Other methods on those paths (405), the slash-suffixed path (307) and every other route still go
through the router, whose handler for a `JsonBodyRoute` is the same function: the two paths
answer byte for byte alike (tests/serving/test_lane.py holds them to it).
"""

from __future__ import annotations

import inspect
import json
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping
from typing import Any, ClassVar

from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from serving import errors
from serving.middleware import BodyReader, Observer, replay

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
    FastAPI reports it (`loc` ["body", character offset], msg "JSON decode error"), a string
    holding a lone UTF-16 surrogate by its field, and nesting too deep as such."""
    found = exc.errors(include_url=False)
    if not found or found[0]["type"] != "json_invalid":
        return [{**err, "loc": ("body", *err["loc"])} for err in found]
    try:
        parsed = json.loads(body)
    except json.JSONDecodeError as e:
        return [_json_error(("body", e.pos), "JSON decode error", e.msg)]
    except UnicodeDecodeError as e:
        return [_json_error(("body", e.start), "JSON decode error", str(e))]
    except RecursionError:
        return [_json_error(("body",), "JSON nested too deeply", "recursion limit exceeded")]
    # Python's parser took what pydantic's refused: a lone surrogate escape (not text)
    where = _surrogate_path(parsed, ())
    if where is not None:
        msg = "a lone UTF-16 surrogate escape is not valid text"
        return [_json_error(("body", *where), msg, "lone surrogate")]
    return [_json_error(("body",), "JSON decode error", str(found[0].get("msg", "")))]


def _json_error(loc: tuple[Any, ...], msg: str, error: str) -> dict[str, Any]:
    return {"type": "json_invalid", "loc": loc, "msg": msg, "input": {}, "ctx": {"error": error}}


def _surrogate_path(value: Any, path: tuple[Any, ...]) -> tuple[Any, ...] | None:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return path
        return None
    if isinstance(value, dict):
        for k, v in value.items():
            found = _surrogate_path(k, path) or _surrogate_path(v, (*path, k))
            if found is not None:
                return found
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found = _surrogate_path(v, (*path, i))
            if found is not None:
                return found
    return None


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
    other parameters, no dependencies): anything else is refused when the route is added.

    `validation_status` is the status of an invalid body: FastAPI's 422, or 400 with
    `{"detail", "field"}` for a protocol that says so (a subclass sets it)."""

    validation_status: ClassVar[int] = 422

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
        return json_endpoint(model, self.endpoint, bad_request=self.validation_status == 400)


class BadRequestRoute(JsonBodyRoute):
    """A JSON route whose malformed bodies are a 400 naming the first problem (OpenRTB)."""

    validation_status = 400


def json_endpoint(
    model: type[BaseModel], endpoint: Callable[..., Any], *, bad_request: bool = False
) -> DirectHandler:
    validate = model.model_validate_json

    async def call(request: Request, body: bytes, content_type: str | None) -> Response:
        try:
            if not is_json(content_type):
                raise not_json_error()
            try:
                value = validate(body)
            except ValidationError as exc:
                raise RequestValidationError(body_errors(exc, body), body=body) from None
        except RequestValidationError as exc:
            if bad_request:
                raise errors.first_problem(exc.errors()) from None
            raise
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


class Lane:
    """POSTs to a `JsonBodyRoute` path go straight to its handler; everything else to `app`.

    The lane is the outermost layer and does for its POSTs what the middlewares behind it do
    for every other request, with the same objects (`middleware.BodyReader`, `Observer`): one
    coroutine frame instead of three, and no send wrapper."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        handlers: Mapping[str, DirectHandler],
        reader: BodyReader,
        observer: Observer,
    ) -> None:
        self.app = app
        self.handlers = handlers
        self.reader = reader
        self.observer = observer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = self.handlers.get(scope["path"]) if scope["type"] == "http" else None
        if handler is None or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        try:
            body = await self.reader.read(scope, receive)
        except errors.ServingError as exc:  # 408, 413: as middleware.BodyLimit answers them
            self.observer(scope["path"], exc.status_code, time.perf_counter() - start)
            await errors.error_response(exc.status_code, exc.detail, exc.field)(
                scope, receive, send
            )
            return
        if body is None:
            return  # the client left before sending its body: nobody to answer
        content_type = None
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = value.decode("latin-1")
                break
        receive = replay(body, receive)
        try:
            response = await handler(Request(scope, receive), body, content_type)
        except (errors.ServingError, RequestValidationError) as exc:  # as the app's handlers
            response = errors.render(exc)
        except Exception:
            # as Starlette's server-error middleware, which is behind the lane when the lane
            # is outside FastAPI's stack (serving.app): a plain 500, then the error goes on
            # to the server's log
            self.observer(scope["path"], 500, time.perf_counter() - start)
            await PlainTextResponse("Internal Server Error", status_code=500)(scope, receive, send)
            raise
        self.observer(scope["path"], response.status_code, time.perf_counter() - start)
        # the response's two messages sent as Response.__call__ would, without its wrappers
        # (no background tasks here)
        await send(
            {
                "type": "http.response.start",
                "status": response.status_code,
                "headers": response.raw_headers,
            }
        )
        await send({"type": "http.response.body", "body": response.body})
