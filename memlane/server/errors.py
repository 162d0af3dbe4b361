"""Errors as JSON: ``{"error": {"type": <class in memlane.errors>, "message": ...}}``.

The type is the nearest public class of the error tree, so a client can raise the same
class. Status codes: 400 invalid input (the library refused it), 422 a request that does not
fit the API's schema (type ``InvalidInputError`` too), 401 no or bad key, 403 the key may
not do this (or the store is read-only), 404 not found (another tenant's id included), 409
conflict, 413 body too large, 429 rate limited (with Retry-After), 502 the LLM failed, 503
the store failed or an erasure is pending (with its counts), 500 anything else, with a
generic message (the trace goes to the log, never to the client).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from .. import errors as tree
from ..serialize import erase_counts_to_dict
from .limits import retry_after

log = logging.getLogger("memlane.server")

STATUS: list[tuple[type[tree.MemlaneError], int]] = [
    (tree.AuthenticationError, 401),
    (tree.PermissionDeniedError, 403),
    (tree.ReadOnlyError, 403),
    (tree.RequestTooLargeError, 413),
    (tree.UsageError, 400),
    (tree.NotFoundError, 404),
    (tree.ConflictError, 409),
    (tree.RateLimitedError, 429),
    (tree.ModelError, 502),
    (tree.BackendError, 503),
]
HTTP_TYPES = {401: "AuthenticationError", 403: "PermissionDeniedError", 404: "NotFoundError",
              409: "ConflictError", 413: "RequestTooLargeError", 429: "RateLimitedError"}


def public_type(exc: tree.MemlaneError) -> str:
    """The nearest class of ``memlane.errors`` (internal subclasses are not public)."""
    for cls in type(exc).__mro__:
        if cls.__module__ == tree.__name__:
            return cls.__name__
    return tree.MemlaneError.__name__


def body(kind: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"type": kind, "message": message, **extra}}


def memlane_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, tree.MemlaneError)
    status = next((code for cls, code in STATUS if isinstance(exc, cls)), 500)
    extra: dict[str, Any] = {}
    headers: dict[str, str] = {}
    if isinstance(exc, tree.ErasurePendingError):
        extra["counts"] = erase_counts_to_dict(exc.counts)
    if isinstance(exc, tree.ModelOutputError):
        extra["raw"] = exc.raw
    if isinstance(exc, tree.RateLimitedError):
        extra["retry_after"] = exc.retry_after
        headers["Retry-After"] = retry_after(exc.retry_after)
    if isinstance(exc, tree.AuthenticationError):
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse(body(public_type(exc), str(exc), **extra), status, headers=headers)


def invalid_request(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = [f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', 'invalid')}"
                for e in exc.errors()]
    return JSONResponse(body("InvalidInputError", "; ".join(problems) or "invalid request"),
                        422)


def http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    kind = HTTP_TYPES.get(exc.status_code, "InvalidInputError" if exc.status_code < 500
                          else "BackendError")
    return JSONResponse(body(kind, str(exc.detail)), exc.status_code,
                        headers=getattr(exc, "headers", None))


def unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse(body("BackendError", "internal server error; the server logged the "
                             "details"), 500)
