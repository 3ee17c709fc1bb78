"""The OpenAPI document and the two pages that show it, served without any network.

``/docs`` (Swagger UI) and ``/redoc`` load their scripts and styles from this package
(``api/static/``: third-party files kept with their licences, versions in
``static/README.md``), never from a CDN, so they work on machines that reach nothing
outside. The pages, ``/openapi.json`` and the assets are ordinary API routes (left out of
the document), so the request metrics label them by their path like any other route.

FastAPI's document is completed here with what it cannot see by itself:

- the two ways of presenting an API key (``Authorization: Bearer`` and ``X-API-Key``) as
  security schemes, and on each operation that needs a key, the requirement and its scope
  (so Swagger UI's *Authorize* button sends the key with *Try it out*);
- the problem+json answers each operation can give (400, 401, 403, 404, 409, 413, 422),
  with the :class:`~creditops.api.problems.Problem` schema and examples made by the same
  :func:`~creditops.api.problems.problem` that answers, in place of FastAPI's own
  validation-error shape, which this service never returns.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path as FilePath
from typing import Annotated, Any, cast

import fastapi.routing
from fastapi import APIRouter, Path, Request
from fastapi.dependencies.models import Dependant
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

from creditops.api.deps import predict_scope
from creditops.api.problems import PROBLEM, ApiProblemError, Problem, problem
from creditops.api.security import SECURITY_REQUIREMENT, SECURITY_SCHEMES

OPENAPI_URL = "/openapi.json"
ASSETS_URL = "/static/docs"
STATIC = FilePath(__file__).with_name("static")
# name in the URL -> (file under static/, media type)
ASSETS = {
    "swagger-ui-bundle.js": ("swagger-ui/swagger-ui-bundle.js", "text/javascript"),
    "swagger-ui.css": ("swagger-ui/swagger-ui.css", "text/css"),
    "favicon.png": ("swagger-ui/favicon-32x32.png", "image/png"),
    "redoc.standalone.js": ("redoc/redoc.standalone.js", "text/javascript"),
}
SWAGGER_UI_PARAMETERS = {
    "validatorUrl": None,  # Swagger UI would otherwise send the document to a public validator
    "displayOperationId": True,
    "defaultModelsExpandDepth": 0,
}
# The pages may load nothing but this service's own files: a bundle that reaches for a
# CDN (redoc's sidebar logo does) is stopped by the browser before any request leaves.
DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; "
    "worker-src 'self' blob:; frame-ancestors 'none'"
)
# Every scope dependency is a closure made by ``api/deps.scope``: they share this code.
_SCOPE_CHECK = getattr(predict_scope, "__code__", None)
# Operations of these tags may refuse a change the current state forbids (409 conflict).
CONFLICT_TAGS = frozenset({"deployments", "experiments"})


# -- the pages ---------------------------------------------------------------------------
def docs_router() -> APIRouter:
    """GET /openapi.json, /docs, /redoc and the pages' assets (not in the document)."""
    router = APIRouter(include_in_schema=False)
    router.add_api_route(OPENAPI_URL, openapi_document, methods=["GET"])
    router.add_api_route("/docs", swagger_page, methods=["GET"])
    router.add_api_route("/redoc", redoc_page, methods=["GET"])
    router.add_api_route(ASSETS_URL + "/{asset}", docs_asset, methods=["GET"])
    return router


async def openapi_document(request: Request) -> JSONResponse:
    return JSONResponse(request.app.openapi())


async def swagger_page(request: Request) -> HTMLResponse:
    root = request.scope.get("root_path", "")
    page = get_swagger_ui_html(
        openapi_url=root + OPENAPI_URL,
        title=f"{request.app.title} - Swagger UI",
        swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
        swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
        swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
        swagger_ui_parameters=SWAGGER_UI_PARAMETERS,
    )
    page.headers["Content-Security-Policy"] = DOCS_CSP
    return page


async def redoc_page(request: Request) -> HTMLResponse:
    root = request.scope.get("root_path", "")
    page = get_redoc_html(
        openapi_url=root + OPENAPI_URL,
        title=f"{request.app.title} - ReDoc",
        redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js",
        redoc_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
        with_google_fonts=False,
    )
    page.headers["Content-Security-Policy"] = DOCS_CSP
    return page


async def docs_asset(asset: Annotated[str, Path(max_length=64)]) -> FileResponse:
    """One of the pages' scripts or styles; only the files named in :data:`ASSETS`."""
    found = ASSETS.get(asset)
    if found is None:
        raise ApiProblemError(404, "not_found", f"There is no documentation asset {asset!r}.")
    relative, media_type = found
    return FileResponse(
        STATIC / relative, media_type=media_type, headers={"Cache-Control": "public, max-age=86400"}
    )


# -- the document ------------------------------------------------------------------------
def _example(status: int, code: str, detail: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(bytes(problem(status, code, detail, **extra).body))
    return body


_STATE = {"field": "state", "message": "the deployment already ended"}
_PAY_0 = {
    "field": "features.pay_0",
    "message": "Field required",
    "type": "missing",
}
ERRORS: dict[int, tuple[str, dict[str, Any]]] = {
    400: (
        "The body is not valid JSON.",
        _example(400, "invalid_json", "The request body is not valid JSON."),
    ),
    401: (
        "No API key, or a key that is not valid (the answer carries `WWW-Authenticate: Bearer`).",
        _example(401, "unauthorized", "An API key is required (Authorization: Bearer <key>)."),
    ),
    403: (
        "The key is valid but lacks the operation's scope.",
        _example(403, "forbidden", "The API key lacks the 'predict' scope for this operation."),
    ),
    404: (
        "The model, version or record named in the request does not exist; `detail` names it.",
        _example(404, "model_not_found", "Model 'acme' is not registered."),
    ),
    409: (
        "The request is valid but the current state forbids it (`errors` names the field).",
        _example(409, "conflict", "the deployment already ended", errors=[_STATE]),
    ),
    413: (
        "The body is larger than `serve.max_body_bytes`.",
        _example(413, "payload_too_large", "The request body exceeds 1048576 bytes."),
    ),
    422: (
        "A field or parameter was refused; `errors` lists each one with its dotted path.",
        _example(422, "validation_error", "features.pay_0: " + _PAY_0["message"], errors=[_PAY_0]),
    ),
}


def complete_openapi(document: dict[str, Any], routes: Sequence[BaseRoute]) -> dict[str, Any]:
    """Add the security schemes and each operation's key scope and error answers to
    ``document`` (FastAPI's), in place; returns it."""
    components = document.setdefault("components", {})
    components["securitySchemes"] = SECURITY_SCHEMES
    schemas = components.setdefault("schemas", {})
    problem_schema = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(problem_schema.pop("$defs", {}))
    schemas["Problem"] = problem_schema
    for route, method, operation in _operations(document, routes):
        needed = needed_scope(route.dependant)
        if needed is not None:
            operation["security"] = SECURITY_REQUIREMENT
            operation["description"] = (
                operation.get("description", "").rstrip()
                + f"\n\nNeeds an API key with scope `{needed}` (or `admin`)."
            ).lstrip()
        responses = operation.setdefault("responses", {})
        for status in _errors_of(route, method, operation, schemas, secured=needed is not None):
            description, example = ERRORS[status]
            content = {
                PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}, "example": example}
            }
            responses[str(status)] = {"description": description, "content": content}
    text = json.dumps(document)
    for unused in ("HTTPValidationError", "ValidationError"):
        if f"#/components/schemas/{unused}" not in text:
            schemas.pop(unused, None)
    return document


def _operations(
    document: dict[str, Any], routes: Sequence[BaseRoute]
) -> Iterator[tuple[APIRoute, str, dict[str, Any]]]:
    paths = document.get("paths", {})
    for route in _api_routes(routes):
        for method in sorted(route.methods or ()):
            operation = paths.get(route.path_format, {}).get(method.lower())
            if operation is not None:
                yield route, method, operation


def _api_routes(routes: Sequence[BaseRoute]) -> Iterator[APIRoute]:
    """Every API route in the document, as the app serves it (with the dependencies of the
    routers that include it). Newer FastAPI keeps included routers whole and walks them with
    ``iter_route_contexts``, as its own document generator does; older ones flatten them."""
    contexts = getattr(fastapi.routing, "iter_route_contexts", None)
    for item in contexts(routes) if contexts is not None else routes:
        original = getattr(item, "original_route", item)
        if isinstance(original, APIRoute) and getattr(item, "include_in_schema", False):
            yield cast(APIRoute, item)


def needed_scope(dependant: Dependant) -> str | None:
    """The key scope an operation's dependencies demand (``api/deps.scope``), if any."""
    for dependency in _walk(dependant):
        call = dependency.call
        if call is not None and getattr(call, "__code__", None) is _SCOPE_CHECK:
            return str(getattr(call, "__name__", "")).removesuffix("_scope")
    return None


def _walk(dependant: Dependant) -> Iterator[Dependant]:
    for dependency in dependant.dependencies:
        yield dependency
        yield from _walk(dependency)


def _errors_of(
    route: APIRoute,
    method: str,
    operation: dict[str, Any],
    schemas: dict[str, Any],
    *,
    secured: bool,
) -> list[int]:
    statuses = [401, 403] if secured else []
    fields = _body_fields(operation, schemas)
    has_body = "requestBody" in operation
    if has_body:
        statuses += [400, 413]
    names_model = "model" in fields or ("name" in fields and "keys" not in route.tags)
    if "{" in route.path_format or names_model:
        statuses.append(404)
    if method != "GET" and CONFLICT_TAGS & set(map(str, route.tags)):
        statuses.append(409)
    if has_body or operation.get("parameters") or method != "GET":
        statuses.append(422)  # a refused field, or a domain error of invalid input
    return sorted(statuses)


def _body_fields(operation: dict[str, Any], schemas: dict[str, Any]) -> set[str]:
    """Property names of the request body's schema (every branch of a union)."""
    content = operation.get("requestBody", {}).get("content", {})
    pending = [media.get("schema", {}) for media in content.values()]
    fields: set[str] = set()
    while pending:
        schema = pending.pop()
        ref = schema.get("$ref")
        if isinstance(ref, str):
            schema = schemas.get(ref.rsplit("/", 1)[-1], {})
        fields |= set(schema.get("properties", {}))
        for key in ("anyOf", "oneOf", "allOf"):
            pending += schema.get(key, [])
    return fields
