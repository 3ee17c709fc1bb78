"""Domain errors and validation failures as RFC 9457 problem+json responses."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from creditops.errors import (
    ConflictError,
    CreditopsError,
    IntegrityError,
    InvalidInputError,
    NotFoundError,
)

log = logging.getLogger("creditops.api")
PROBLEM = "application/problem+json"
# What a client is told of a failure on the server's side (the details are logged).
SERVER_SIDE = {
    "decision_log_failed": "The decisions could not be stored, so none was returned; "
    "nothing was decided. Retry the request.",
    "store_unavailable": "The service database is unavailable; retry later.",
    "integrity_error": "A stored artefact failed its integrity check and was not used.",
    "": "An internal error occurred; it has been logged.",
}


class ProblemFieldError(BaseModel):
    """One refused field of a request."""

    model_config = ConfigDict(extra="forbid")

    field: str = Field(description="Dotted path of the field (``features.pay_0``), or ``body``.")
    message: str
    type: str | None = Field(
        default=None, description="The validation error's kind (validation errors only)."
    )


class Problem(BaseModel):
    """The body of every error answer (RFC 9457, ``application/problem+json``), as
    :func:`problem` builds it."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(examples=["https://creditops.dev/problems/model_not_found"])
    title: str = Field(examples=["model not found"])
    status: int = Field(ge=400, le=599, examples=[404])
    code: str = Field(description="Stable machine-readable code.", examples=["model_not_found"])
    detail: str = Field(examples=["Model 'acme' is not registered."])
    errors: list[ProblemFieldError] | None = Field(
        default=None, description="The refused fields, when the problem is about some."
    )


class ApiProblemError(Exception):
    """An HTTP-level refusal raised inside ``api/`` (auth, size limits, conflicts)."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.field = field
        self.headers = headers


def problem(
    status: int,
    code: str,
    detail: str,
    *,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": f"https://creditops.dev/problems/{code}",
        "title": code.replace("_", " "),
        "status": status,
        "code": code,
        "detail": detail,
    }
    if errors:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def _field(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body",)]
    return ".".join(parts) or "body"


def _one_branch(errors: Any, body: object) -> list[dict[str, Any]]:
    """Errors of the union branch the client meant, with the branch's class name removed.

    A predict body is either one application or a batch; pydantic reports failures of both
    alternatives. The shape of the body says which one the client meant.
    """
    wanted = (
        "BatchRequest"
        if isinstance(body, dict) and "applications" in body
        else "ApplicationRequest"
    )
    picked: list[dict[str, Any]] = []
    for error in errors:
        loc = list(error.get("loc", ()))
        if len(loc) > 1 and isinstance(loc[1], str) and loc[1].endswith("Request"):
            if not loc[1].endswith(wanted):
                continue
            loc = [loc[0], *loc[2:]]
        picked.append({**error, "loc": loc})
    return picked or list(errors)


def status_for(exc: CreditopsError) -> int:
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, InvalidInputError):
        return 422
    if isinstance(exc, ConflictError):
        return 409
    if isinstance(exc, IntegrityError):
        return 503
    return 500


def install_problem_handlers(app: FastAPI, on_error: Any = None) -> None:
    def count(kind: str) -> None:
        if on_error is not None:
            on_error(kind)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            count("invalid_json")
            return problem(400, "invalid_json", "The request body is not valid JSON.")
        details = [
            {
                "field": _field(e.get("loc", ())),
                "message": str(e.get("msg", "")),
                "type": str(e.get("type", "")),
            }
            for e in _one_branch(errors, exc.body)
        ]
        count("validation_error")
        first = details[0] if details else {"field": "body", "message": "invalid"}
        return problem(
            422, "validation_error", f"{first['field']}: {first['message']}", errors=details
        )

    @app.exception_handler(ApiProblemError)
    async def _api_problem(_: Request, exc: ApiProblemError) -> JSONResponse:
        count(exc.code)
        errors = [{"field": exc.field, "message": exc.detail}] if exc.field else None
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else exc.headers
        return problem(exc.status, exc.code, exc.detail, errors=errors, headers=headers)

    @app.exception_handler(CreditopsError)
    async def _domain(_: Request, exc: CreditopsError) -> JSONResponse:
        status = status_for(exc)
        count(exc.code)
        if status >= 500:
            # The message may carry a driver's error text: it goes to the log, not the client.
            log.error("request failed: %s: %s", exc.code, exc.message)
            return problem(status, exc.code, SERVER_SIDE.get(exc.code, SERVER_SIDE[""]))
        errors = [{"field": exc.field, "message": exc.message}] if exc.field else None
        return problem(status, exc.code, exc.message, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        count(code)
        return problem(exc.status_code, code, str(exc.detail))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        count("internal_error")
        log.exception("unhandled error", exc_info=exc)
        return problem(500, "internal_error", "An internal error occurred; it has been logged.")
