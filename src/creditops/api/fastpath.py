"""A hand-written ASGI path for the one hot operation: a well-formed, authorised predict.

``benchmarks/serve_vs_mlflow.py`` showed that, after the scoring itself was made cheap,
FastAPI's per-request machinery was the largest share of a predict request's time on the
event loop: route matching over every route, dependency solving (which also parses the
query string), ``json.loads`` followed by validation in Python mode, and several middleware
layers. For the requests that succeed this module does the same work directly: the body is
parsed and validated in one call to pydantic-core (``TypeAdapter.validate_json``, the same
request models), the API key is checked with the same :class:`Authenticator`, and the same
:func:`respond_to_predict` scores, logs and answers.

Anything that is not that happy path is handed to FastAPI unchanged, with the body
replayed: a missing or wrong key, a key without the scope, a body that does not validate,
a content type other than JSON, JSON escapes (``\\u...``) or non-ASCII bytes (whose
decoding could differ in corner cases between the two JSON parsers). FastAPI then answers
exactly as it would have, so every error keeps its problem+json shape and the OpenAPI
contract stays FastAPI's. Errors raised while deciding (e.g. the decision log refusing a
write) go to the app's own exception handlers, as they would inside FastAPI.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from creditops.api.problems import ApiProblemError

Responder = Callable[[Any, Request, Any], Awaitable[Response]]


@dataclass(frozen=True)
class FastRoute:
    """One predict path: how to validate its body and who answers it."""

    route: Any  # the FastAPI route, for the request metrics' path label
    adapter: TypeAdapter[Any]
    respond: Responder  # (body, request, principal) -> response
    scope_name: str = "predict"


class PredictFastPath:
    """Serves well-formed, authorised predicts itself; hands every other request on."""

    def __init__(
        self,
        routes: dict[str, FastRoute],
        auth: Any,
        handlers: dict[Any, Any],
        *,
        max_body_bytes: int,
        on_served: Callable[[Scope, int, float], None],
    ) -> None:
        self.routes = routes
        self.auth = auth
        self.handlers = handlers  # the app's exception handlers, by exception class
        self.max_body = max_body_bytes
        self.on_served = on_served  # (scope, status, started): request metrics
        self.served = 0  # requests answered here (for tests and debugging)
        self.passed_on = 0  # matching requests handed to FastAPI

    def match(self, scope: Scope) -> FastRoute | None:
        if scope["method"] != "POST" or scope.get("query_string"):
            return None
        return self.routes.get(scope["path"])

    async def handle(
        self, route: FastRoute, scope: Scope, receive: Receive, send: Send, app: ASGIApp
    ) -> None:
        """Serve the request, or pass it to ``app`` (the full stack) with its body replayed."""
        started = time.perf_counter()
        body, complete, more = await read_body(receive, self.max_body)
        if not complete:  # too large, or the client left: the full stack answers
            self.passed_on += 1
            await app(scope, replay_body(body, receive, more=more), send)
            return
        request = Request(scope, receive)
        principal = await self._principal(request, route)
        parsed = _parse(route, request, body) if principal is not None else None
        if principal is None or parsed is None:
            self.passed_on += 1
            await app(scope, replay_body(body, receive), send)
            return
        self.served += 1
        scope["route"] = route.route
        request.state.principal = principal
        try:
            response = await route.respond(parsed, request, principal)
        except Exception as exc:  # the app's handlers answer, as inside FastAPI
            response = await self._handled(request, exc)
        await response(scope, receive, send)
        self.on_served(scope, response.status_code, started)

    async def _principal(self, request: Request, route: FastRoute) -> Any | None:
        try:
            principal = await self.auth.principal(request)
        except ApiProblemError:
            return None
        return principal if principal.allows(route.scope_name) else None

    async def _handled(self, request: Request, exc: Exception) -> Response:
        for cls in type(exc).__mro__:
            handler = self.handlers.get(cls)
            if handler is not None:
                response: Response = await handler(request, exc)
                return response
        raise exc


def _parse(route: FastRoute, request: Request, body: bytes) -> Any | None:
    content_type = request.headers.get("content-type", "")
    if content_type.split(";", 1)[0].strip().lower() != "application/json":
        return None
    if not body or not body.isascii() or b"\\u" in body:
        return None
    try:
        return route.adapter.validate_json(body)
    except ValidationError:
        return None


async def read_body(receive: Receive, limit: int) -> tuple[bytes, bool, bool]:
    """(body read so far, whether it is complete, whether more body is still to come).

    Reading stops as soon as the body exceeds ``limit``; the full stack then answers 413.
    """
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client went away
            return b"".join(chunks), False, False
        chunk = message.get("body", b"")
        more = bool(message.get("more_body", False))
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            return b"".join(chunks), False, more
        if not more:
            return b"".join(chunks), True, False


def replay_body(body: bytes, receive: Receive, *, more: bool = False) -> Receive:
    """A ``receive`` that gives the app the body read so far, then the real channel."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": more}
        return await receive()

    return replay
