"""Errors as JSON: ``{"error": {"type": <class in memlane.errors>, "message": ...}}``.

The type is the nearest public class of the error tree, so a client can raise the same
class. Status codes: 400 invalid input (the library refused it), 422 a request that does not
fit the API's schema (type ``InvalidInputError`` too), 401 no or bad key, 403 the key may
not do this (or the store is read-only), 404 not found (another tenant's id included), 409
conflict, 413 body too large, 429 rate limited (with Retry-After), 502 the LLM failed, 503
the store failed or an erasure is pending (with its counts), 500 anything else, with a
generic message (the trace goes to the log, never to the client).

The text of a store's or a model's failure (file paths, SQL, a driver's constraint names)
stays in the log too: such an error answers a generic message with an error ``id``, and the
log line with the details carries the same id. So does a refusal the store translated from
a database error (a constraint of the stored data).
"""

from __future__ import annotations

import logging
import secrets
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


DB_API_ERRORS = ("DatabaseError", "InterfaceError")
"""The base classes every DB-API 2.0 driver's errors derive from (PEP 249)."""
GENERIC = {
    tree.ErasurePendingError: "the rows are erased, but their bytes remain in the store's "
    "files while another connection holds an older read snapshot; the store completes the "
    "erasure at its next open or erasure",
    tree.ModelError: "the model failed",
    tree.StoreError: "the store failed",
    tree.BackendError: "the server's backend failed",
    tree.UsageError: "the store refused the write, nothing stored: it clashes with data "
    "already stored (an id in use, in this tenant or another)",
}


def from_database(exc: BaseException) -> bool:
    """Whether ``exc`` was translated from a database driver's error."""
    cause = exc.__cause__
    while cause is not None:
        if any(cls.__name__ in DB_API_ERRORS for cls in type(cause).__mro__):
            return True
        cause = cause.__cause__
    return False


def internal(exc: tree.MemlaneError) -> bool:
    """Whether the text of ``exc`` is for the server's log rather than its caller: a
    backend's failure (but not a rate limit, which the server itself decides), or a
    refusal translated from the database."""
    if isinstance(exc, tree.RateLimitedError):
        return False
    return isinstance(exc, tree.BackendError) or from_database(exc)


def hidden(request: Request, exc: tree.MemlaneError) -> tuple[str, str]:
    """The generic message and error id of an internal error; its text goes to the log."""
    error_id = secrets.token_hex(8)
    log.warning("error %s on %s %s: %s: %s", error_id, request.method, request.url.path,
                type(exc).__name__, exc)
    summary = next(text for cls, text in GENERIC.items() if isinstance(exc, cls))
    return f"{summary}; the server logged the details (error id {error_id})", error_id


def memlane_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, tree.MemlaneError)
    status = next((code for cls, code in STATUS if isinstance(exc, cls)), 500)
    extra: dict[str, Any] = {}
    message = str(exc)
    if internal(exc):
        message, extra["id"] = hidden(request, exc)
    elif isinstance(exc, tree.ReadOnlyError):
        message = exc.PUBLIC
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
    return JSONResponse(body(public_type(exc), message, **extra), status, headers=headers)


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
    error_id = secrets.token_hex(8)
    log.error("error %s on %s %s: unexpected", error_id, request.method, request.url.path,
              exc_info=exc)
    return JSONResponse(body("BackendError", f"internal server error; the server logged the "
                             f"details (error id {error_id})", id=error_id), 500)
