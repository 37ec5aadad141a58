"""Every error leaves as `{"error": {"code", "message", "param"}}`: one mapping, in one place.

Domain errors carry their own status; validation errors are 422 with the offending field as
`param`; database races surface as 409, values the database refuses (NUL in text) as 422, and an
unreachable database as 503. A bug still answers 500
in the same shape, without a traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DatabaseError, DataError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError
from starlette.exceptions import HTTPException

from core.services.errors import DomainError

log = logging.getLogger("api")

HTTP_CODES = {400: "invalid_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
              405: "method_not_allowed", 409: "conflict", 413: "too_large",
              415: "unsupported_media_type", 422: "invalid_request", 429: "rate_limited"}


PART_TOO_LARGE = "Part exceeded maximum size"  # starlette.formparsers.MultiPartParser's message


def error_response(status: int, code: str, message: str, param: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "param": param}}
    return JSONResponse(body, status_code=status, headers=headers)


def _param(loc: tuple) -> str | None:
    """`("body", "config", "lr")` -> `config.lr`; `("query", "limit")` -> `limit`."""
    parts = [str(p) for p in loc[1:]] if loc and loc[0] in ("body", "query", "path", "header") else list(map(str, loc))
    return ".".join(parts) or None


async def domain_error(request: Request, exc: DomainError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return error_response(exc.status, exc.code, exc.message, exc.param, headers)


async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
    param = _param(tuple(first.get("loc", ())))
    message = "; ".join(f"{_param(tuple(e.get('loc', ()))) or 'body'}: {e.get('msg')}" for e in errors[:5])
    return error_response(422, "invalid_request", message or "invalid request", param)


async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
    if exc.status_code == 400 and str(exc.detail).startswith(PART_TOO_LARGE):
        # Starlette's multipart parser refuses a text field over 1 MB before any route sees it,
        # without saying which; the routes' own limits (`max_length`) are far smaller.
        return error_response(413, "too_large", f"{exc.detail.rstrip('.')}: a form field other than "
                              "the file is too long; text fields hold at most 20,000 characters "
                              "(prompt_template, system_prompt) or far fewer (names, fields); send "
                              "data in the file", "form")
    code = HTTP_CODES.get(exc.status_code, "error")
    return error_response(exc.status_code, code, str(exc.detail), None, getattr(exc, "headers", None))


async def integrity_error(request: Request, exc: IntegrityError) -> JSONResponse:
    log.info("integrity error: %s", exc)
    return error_response(409, "conflict", "the request conflicts with a concurrent change; retry")


async def data_error(request: Request, exc: DataError) -> JSONResponse:
    # The database refused a value the user sent (a NUL byte in text, a number out of range).
    log.info("data error: %s", exc)
    return error_response(422, "invalid_request", "the request contains a value the database cannot "
                          "store (NUL bytes or out-of-range numbers?)")


async def operational_error(request: Request, exc: OperationalError) -> JSONResponse:
    log.warning("database unavailable: %s", exc)
    return error_response(503, "unavailable", "the database is unavailable; retry shortly",
                          headers={"Retry-After": "5"})


async def database_error(request: Request, exc: DatabaseError) -> JSONResponse:
    # Not a bad request (those are DataError/IntegrityError): the file is corrupted or unreadable.
    log.error("database error: %s", exc)
    return error_response(503, "unavailable", "the database cannot be read (corrupted or "
                          "unreadable); the administrator must restore it (docs/reliability.md)",
                          headers={"Retry-After": "60"})


async def pool_timeout(request: Request, exc: SQLAlchemyTimeoutError) -> JSONResponse:
    log.warning("no database connection within the pool timeout: %s", exc)
    return error_response(503, "overloaded", "the server is busy; retry shortly",
                          headers={"Retry-After": "1"})


async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(500, "internal_error", "internal error; the server log has details")


# Starlette types every handler as taking `Exception`; each of ours takes the class it is registered
# for (which Starlette guarantees), so `_on` accepts the handler with its exception typed Any.
Handler = Callable[[Request, Any], Awaitable[JSONResponse]]


def _on(app: FastAPI, exc_type: type[Exception], handler: Handler) -> None:
    app.add_exception_handler(exc_type, handler)


def install(app: FastAPI) -> None:
    """Register every handler on `app`."""
    _on(app, DomainError, domain_error)
    _on(app, RequestValidationError, validation_error)
    _on(app, HTTPException, http_error)
    _on(app, IntegrityError, integrity_error)
    _on(app, DataError, data_error)
    _on(app, OperationalError, operational_error)
    _on(app, SQLAlchemyTimeoutError, pool_timeout)
    _on(app, DatabaseError, database_error)
    _on(app, Exception, unexpected_error)
